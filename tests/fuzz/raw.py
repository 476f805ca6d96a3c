"""HTTP/2 as bare frames (`RawPeer`): what goes out is exactly what a test chose,
legal or not; what comes in is parsed by the frame layout (RFC 9113 section 4)
and hpack, and answered as a client must (SETTINGS and PING acknowledged, both
windows credited for every DATA), so a victim stream on the connection flows.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

import hpack

from tests.fuzz.peer import Answer

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """A frame header and payload as they go on the wire; nothing is checked."""
    length = len(payload) & 0xFFFFFF
    return (
        struct.pack(">I", length)[1:]
        + bytes([kind & 0xFF, flags & 0xFF])
        + struct.pack(">I", stream_id & 0x7FFFFFFF)
        + payload
    )


@dataclass
class RawPeer:
    """One connection spoken frame by frame: what goes out is what the test
    chose; what comes in is parsed with hyperframe's layout and hpack."""

    port: int
    sock: socket.socket = field(init=False)
    encoder: hpack.Encoder = field(default_factory=hpack.Encoder)
    decoder: hpack.Decoder = field(default_factory=hpack.Decoder)
    answers: dict[int, Answer] = field(default_factory=dict)
    goaway: tuple[int, int] | None = None  # (last stream id, error code)
    closed: bool = False
    # "eof", or "reset": a server that closes with our frames unread sends RST,
    # and the kernel may drop what it had sent before (a GOAWAY among it).
    closed_by: str = ""
    _buffer: bytes = b""
    _block: tuple[int, bytes] | None = None  # a header block awaiting CONTINUATION

    def __post_init__(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.send(PREFACE + frame(0x4, 0, 0, b""))

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def header_block(self, headers: list[tuple[str, str]]) -> bytes:
        block: bytes = self.encoder.encode(headers)
        return block

    def request(self, stream_id: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """A whole request on `stream_id`: HEADERS, then DATA with END_STREAM."""
        self.answers.setdefault(stream_id, Answer())
        flags = 0x4 | (0x1 if not body else 0)
        self.send(frame(0x1, flags, stream_id, self.header_block(headers)))
        if body:
            self.send(frame(0x0, 0x1, stream_id, body))

    def pump(self, within: float) -> None:
        """Read and parse what arrives within `within` seconds."""
        deadline = time.monotonic() + within
        while not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(0.005, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                self.closed, self.closed_by = True, "reset"
                break
            if not data:
                self.closed, self.closed_by = True, "eof"
                break
            self._buffer += data
            self._parse()

    def until(self, stream_id: int, within: float) -> Answer:
        deadline = time.monotonic() + within
        while not self.closed and time.monotonic() < deadline:
            answer = self.answers.get(stream_id)
            if answer is not None and (answer.ended or answer.reset is not None):
                break
            self.pump(0.05)
        return self.answers.setdefault(stream_id, Answer())

    def _parse(self) -> None:
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                return
            kind, flags = self._buffer[3], self._buffer[4]
            stream_id = int.from_bytes(self._buffer[5:9], "big") & 0x7FFFFFFF
            payload = self._buffer[9 : 9 + length]
            self._buffer = self._buffer[9 + length :]
            self._on_frame(kind, flags, stream_id, payload)

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if kind == 0x0:  # DATA: credit both windows back at once
            answer = self.answers.setdefault(stream_id, Answer())
            pad = payload[0] if flags & 0x8 and payload else 0
            answer.body += payload[1 : len(payload) - pad] if flags & 0x8 else payload
            if payload:
                increment = struct.pack(">I", len(payload))
                self.send(frame(0x8, 0, 0, increment) + frame(0x8, 0, stream_id, increment))
            answer.ended = answer.ended or bool(flags & 0x1)
        elif kind in (0x1, 0x9):  # HEADERS, CONTINUATION
            block = payload
            if kind == 0x1:
                if flags & 0x8 and payload:
                    block = block[1 : len(block) - payload[0]]
                if flags & 0x20:
                    block = block[5:]
                self._block = (stream_id, b"")
            held = self._block[1] if self._block else b""
            self._block = (stream_id, held + block)
            if flags & 0x4:
                self._headers(stream_id, self._block[1], kind == 0x1 and bool(flags & 0x1))
                self._block = None
            elif kind == 0x1 and flags & 0x1:
                self.answers.setdefault(stream_id, Answer()).ended = True
        elif kind == 0x3 and len(payload) == 4:  # RST_STREAM
            self.answers.setdefault(stream_id, Answer()).reset = int.from_bytes(payload, "big")
        elif kind == 0x4 and not flags & 0x1:  # SETTINGS: acknowledge
            self.send(frame(0x4, 0x1, 0, b""))
        elif kind == 0x6 and not flags & 0x1:  # PING: answer, as a client must
            self.send(frame(0x6, 0x1, 0, payload))
        elif kind == 0x7 and len(payload) >= 8:  # GOAWAY
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            self.goaway = (last, int.from_bytes(payload[4:8], "big"))

    def _headers(self, stream_id: int, block: bytes, end: bool) -> None:
        answer = self.answers.setdefault(stream_id, Answer())
        try:
            decoded = self.decoder.decode(block)
        except hpack.HPACKError:
            return
        for name, value in decoded:
            key = name.decode() if isinstance(name, bytes) else name
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            if key == ":status" and answer.status is None:
                answer.status = int(text)
            else:
                answer.headers[key] = text
        answer.ended = answer.ended or end

    def close(self) -> None:
        self.sock.close()
