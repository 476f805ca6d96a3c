"""Clients for the fuzz tests: HTTP/1.1 on a raw socket, and HTTP/2 through h2's
state machine (`FuzzPeer`); tests/fuzz/raw.py speaks HTTP/2 as bare frames.

Each returns what the server said as plain data (`Answer`), and none of them
raises for anything the server does: a reset, a GOAWAY or a closed socket is
an answer too, so a test can judge it.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field

import h2.events
import h2.exceptions

from tests.adversarial.h2peer import H2Peer


@dataclass
class Answer:
    """One stream's (or one HTTP/1.1 request's) response, as far as it came."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    ended: bool = False
    reset: int | None = None  # RST_STREAM error code from the server

    def json_error(self) -> object:
        import json

        try:
            return json.loads(self.body)
        except ValueError:
            return None


# --- HTTP/1.1 ------------------------------------------------------------------


def http11(
    port: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
    timeout: float = 10.0,
) -> Answer:
    """One request on its own connection (`Connection: close`), read to EOF."""
    head = [f"{method} {path} HTTP/1.1", "Host: ghostgate", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers]
    if method == "POST" or body:
        head.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    answer = Answer()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # refused early (413, 431): the answer may be waiting anyway
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                answer.ended = True
                break
            received += chunk
    head_bytes, _, rest = received.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head_bytes)
    if match:
        answer.status = int(match.group(1))
        for line in head_bytes.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            answer.headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        answer.body = (
            dechunk(rest) if "chunked" in answer.headers.get("transfer-encoding", "") else rest
        )
    return answer


def dechunk(data: bytes) -> bytes:
    out, rest = b"", data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return out


# --- HTTP/2 through h2 -----------------------------------------------------------


class FuzzPeer(H2Peer):
    """H2Peer that keeps the windows open (it acknowledges what it reads) and
    sends bodies as flow control allows."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.answers: dict[int, Answer] = {}
        self.why_closed = ""  # what ended the connection, as this side saw it
        self.settings_sent, self.settings_acked = 1, 0  # the preface's SETTINGS is the first

    def events(self, within: float = 0.2) -> list[h2.events.Event]:
        """What arrives within `within` seconds; back as soon as a read brought
        something and nothing more is waiting (H2Peer always waits it out)."""
        deadline = time.monotonic() + within
        got: list[h2.events.Event] = []
        while not self.closed:
            wait = 0.0005 if got else max(0.0005, deadline - time.monotonic())
            self.sock.settimeout(wait)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except OSError as exc:
                self.closed, self.why_closed = True, f"read failed: {exc!r}"
                break
            if not data:
                self.closed, self.why_closed = True, "the server closed the socket"
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                self.closed, self.why_closed = True, f"h2 refused what the server sent: {exc!r}"
                break
            for event in events:
                self._note(event)
            got += events
            try:
                self.flush()
            except OSError:
                self.closed = True
        self.received += got
        return got

    def update_settings(self, changes: dict[int, int]) -> None:
        self.conn.update_settings(changes)
        self.settings_sent += 1
        self.flush()

    def _note(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.SettingsAcknowledged):
            self.settings_acked += 1
        stream_id = getattr(event, "stream_id", None)
        if stream_id is None:
            return
        answer = self.answers.setdefault(stream_id, Answer())
        if isinstance(event, h2.events.ResponseReceived):
            for name, value in event.headers:
                key = name.decode() if isinstance(name, bytes) else name
                text = value.decode("latin-1") if isinstance(value, bytes) else value
                if key == ":status":
                    answer.status = int(text)
                else:
                    answer.headers[key] = text
        elif isinstance(event, h2.events.DataReceived):
            answer.body += event.data
            try:
                self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
            except (h2.exceptions.ProtocolError, KeyError):
                pass  # the stream closed meanwhile: the connection window was credited
        elif isinstance(event, h2.events.StreamEnded):
            answer.ended = True
        elif isinstance(event, h2.events.StreamReset):
            answer.reset = event.error_code

    def open(self, headers: list[tuple[str, str]], body: bytes, *, end: bool = True) -> int:
        """A new stream with `headers`, then `body` (END_STREAM after it when `end`)."""
        stream_id: int = self.conn.get_next_available_stream_id()
        self.answers[stream_id] = Answer()
        self.conn.send_headers(stream_id, headers, end_stream=end and not body)
        self.flush()
        if body:
            self.send_body(stream_id, body, end=end)
        return stream_id

    def send_body(self, stream_id: int, body: bytes, *, end: bool, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while body and not self.closed and time.monotonic() < deadline:
            if self.finished(stream_id):
                return  # answered (413, 401...) or reset: stop sending, as a client must
            try:
                window = self.conn.local_flow_control_window(stream_id)
            except h2.exceptions.ProtocolError:
                return
            size = min(window, self.conn.max_outbound_frame_size, len(body))
            if size <= 0:
                self.events(0.02)
                continue
            chunk, body = body[:size], body[size:]
            try:
                self.conn.send_data(stream_id, chunk, end_stream=end and not body)
                self.flush()
            except (h2.exceptions.ProtocolError, OSError):
                return

    def finished(self, stream_id: int) -> bool:
        answer = self.answers.get(stream_id)
        return answer is not None and (answer.ended or answer.reset is not None)

    def wait(self, stream_ids: list[int], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not self.closed and time.monotonic() < deadline:
            if all(self.finished(s) for s in stream_ids):
                return
            self.events(0.05)


def h2_request(
    port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes
) -> Answer:
    """One request on its own HTTP/2 connection."""
    peer = FuzzPeer(port)
    try:
        full = [(":method", method), (":scheme", "http"), (":authority", "ghostgate")]
        full += [(":path", path), *headers]
        if body:
            full.append(("content-length", str(len(body))))
        try:
            stream_id = peer.open(full, body)
        except (h2.exceptions.ProtocolError, ValueError, OSError):
            return Answer()
        peer.wait([stream_id])
        return peer.answers[stream_id]
    finally:
        peer.close()
