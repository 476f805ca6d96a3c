"""A raw HTTP/2 client for attack tests: any frame sequence, real RST_STREAM."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import DataFrame, PingFrame, PriorityFrame, SettingsFrame


class H2Peer:
    """One connection driven by hand; `events()` collects what the server sent."""

    def __init__(self, port: int, *, window: int | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        self.received: list[h2.events.Event] = []
        self.closed = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def raw(self, data: bytes) -> None:
        """Bytes on the wire as they are (frames h2 would not let us send)."""
        self.sock.sendall(data)

    def request(
        self, path: str, token: str, body: dict[str, Any] | None = None, *, end: bool = True
    ) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        payload = json.dumps(body).encode() if body is not None else b""
        headers = [
            (":method", "POST" if body is not None else "GET"),
            (":scheme", "http"),
            (":authority", "ghostgate"),
            (":path", path),
            ("authorization", f"Bearer {token}"),
        ]
        if payload:
            headers.append(("content-length", str(len(payload))))
        self.conn.send_headers(stream_id, headers, end_stream=not payload and end)
        if payload and end:
            self.conn.send_data(stream_id, payload, end_stream=True)
        self.flush()
        return stream_id

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id)
        self.flush()

    def events(self, within: float = 0.2) -> list[h2.events.Event]:
        """Read what arrives within `within` seconds (or until the server closes)."""
        deadline = time.monotonic() + within
        got: list[h2.events.Event] = []
        while not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            try:
                got += self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.closed = True
            self.flush()
        self.received += got
        return got

    def until(self, predicate: Any, within: float = 10.0) -> list[h2.events.Event]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not self.closed:
            self.events(0.1)
            if predicate(self.received):
                break
        return self.received

    def goaway(self) -> h2.events.ConnectionTerminated | None:
        for event in self.received:
            if isinstance(event, h2.events.ConnectionTerminated):
                return event
        return None

    def close(self) -> None:
        self.sock.close()


def ping_frame(n: int) -> bytes:
    return PingFrame(0, opaque_data=n.to_bytes(8, "big")).serialize()


def settings_frame() -> bytes:
    return SettingsFrame(0, settings={}).serialize()


def empty_data_frame(stream_id: int) -> bytes:
    return DataFrame(stream_id, data=b"").serialize()


def priority_frame(stream_id: int) -> bytes:
    return PriorityFrame(stream_id, depends_on=0, stream_weight=16).serialize()


def body_of(events: list[h2.events.Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id
    )


def ended(events: list[h2.events.Event], stream_id: int) -> bool:
    return any(
        isinstance(e, h2.events.StreamEnded | h2.events.StreamReset) and e.stream_id == stream_id
        for e in events
    )


def status(events: list[h2.events.Event], stream_id: int) -> int | None:
    for e in events:
        if isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream_id:
            for name, value in e.headers:
                if name in (b":status", ":status"):
                    return int(value)
    return None
