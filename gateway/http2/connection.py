"""One HTTP/2 client connection on asyncio and the sans-I/O `h2` library.

Why our own: httpcore 1.0.9's HTTP/2 client never sends RST_STREAM when a
streamed response is closed early, so the server keeps generating (docs/ARCHITECTURE.md).
Here a stream that is reset, closed unfinished, or whose reading task is
cancelled sends RST_STREAM(CANCEL) at once.

Shape: one socket, one reader task. The reader task is the only code that
feeds bytes into h2; it turns h2 events into per-stream state (`_StreamState`)
that `request` and `read_chunk` wait on. Writes are made inline: h2 is
sans-I/O and an asyncio write never blocks, so a reset or a window update is
sent synchronously and survives the cancellation that caused it.

Exceptions::

    H2Error              base; .retryable: re-sending the request is reasonable
    ├── ConnectError     TCP/TLS connect, ALPN "h2" or the server preface failed
    ├── ConnectionLost   the connection died or is going away under a request
    │                    (EOF, socket error, protocol error, GOAWAY); retryable
    │                    when the request was never sent or processed, or the
    │                    server dropped it after its GOAWAY before any body byte
    └── StreamReset      RST_STREAM on the stream; .error_code, .remote;
                         retryable when the server refused it (REFUSED_STREAM)
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hpack.struct import Header
from hyperframe.frame import Frame, GoAwayFrame

from gateway.http2.hpack import plain_encoding
from gateway.lifecycle import ClosedOnExit

READ_SIZE = 64 * 1024
DEFAULT_WINDOW = 65_535  # RFC 9113 initial window, for the connection and each stream
STREAM_WINDOW = 1024 * 1024  # what we let the server send ahead, per stream
CONNECTION_WINDOW = 16 * 1024 * 1024  # ... and over all streams
CLOSE_TIMEOUT = 2.0  # seconds to wait for the socket (and TLS close_notify) on close
PING_PAYLOAD = b"ghostgte"  # 8 bytes, sent after a GOAWAY to probe the connection
# Connection-specific headers are illegal in HTTP/2 (RFC 9113 8.2.2); Host becomes :authority.
_DROPPED_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"}
)

Headers = list[tuple[str, str]]


class H2Error(Exception):
    """Base of every error this HTTP/2 client raises."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ConnectError(H2Error):
    """The connection could not be set up: TCP, TLS, ALPN or the HTTP/2 preface."""


class ConnectionLost(H2Error):
    """The connection died, or is going away, while a request needed it."""


class StreamReset(H2Error):
    """The stream was reset with RST_STREAM, by the server (`remote`) or by us."""

    def __init__(self, stream_id: int, error_code: int, *, remote: bool = True) -> None:
        who = "server" if remote else "client"
        super().__init__(
            f"stream {stream_id} reset by the {who} ({error_name(error_code)})",
            retryable=remote and error_code == ErrorCodes.REFUSED_STREAM,
        )
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote = remote


def error_name(code: int) -> str:
    """`CANCEL` for 8: the RFC 9113 name of an HTTP/2 error code."""
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


def build_request_headers(
    method: str,
    scheme: str,
    authority: str,
    path: str,
    headers: Iterable[tuple[str, str]],
    body_length: int,
) -> Headers:
    """A request's HEADERS block: pseudo-headers first, names lower-cased,
    connection-specific headers dropped, content-length added for a body."""
    block = [
        (":method", method.upper()),
        (":scheme", scheme),
        (":authority", authority),
        (":path", path),
    ]
    has_length = False
    for name, value in headers:
        name = name.lower()
        if name in _DROPPED_HEADERS or (name == "te" and value.lower() != "trailers"):
            continue
        has_length = has_length or name == "content-length"
        block.append((name, value))
    if body_length and not has_length:
        block.append(("content-length", str(body_length)))
    return block


class _ClientH2(h2.connection.H2Connection):
    """h2 that keeps the connection open after a graceful GOAWAY, and sends
    header strings without Huffman coding (gateway/http2/hpack.py: for a
    router relaying hundreds of requests a second, the coding cost more CPU
    than the bytes it saves).

    h2 4.4.1 closes its state machine on any GOAWAY (python-hyper/h2#1181) and
    then rejects the frames of the streams the server promised to finish, even
    those later in the same read; it also empties its outbound buffer, which
    drops what it had queued in that read: a PING ACK, a WINDOW_UPDATE the
    finishing streams need, our RST_STREAM of a cancel. After a graceful
    GOAWAY we restore the state and keep those frames; we open no new stream.
    (The overridden method's source hash is held by tests/gateway/server/test_patches.py.)
    """

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        plain_encoding(self)
        self._kept_outbound = b""

    def _receive_goaway_frame(
        self, frame: GoAwayFrame
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        if frame.error_code != ErrorCodes.NO_ERROR:
            return super()._receive_goaway_frame(frame)
        before = self.state_machine.state
        self._kept_outbound += super().data_to_send()  # taken before h2 clears it
        result = super()._receive_goaway_frame(frame)
        self.state_machine.state = before
        return result

    def data_to_send(self, amount: int | None = None) -> bytes:
        kept, self._kept_outbound = self._kept_outbound, b""
        if kept and amount is not None:
            raise ValueError("partial reads of the outbound buffer are not supported")
        return kept + super().data_to_send(amount)


class _StreamState:
    """What the reader task learned about one stream; request and reads wait on it."""

    def __init__(self, stream_id: int, record_chunk_times: bool) -> None:
        self.stream_id = stream_id
        self.status: int | None = None
        self.headers: Headers = []
        self.trailers: Headers = []
        self.chunks: deque[tuple[bytes, int]] = deque()  # (data, flow-controlled length)
        self.ended = False  # END_STREAM received: the body is all here
        self.error: H2Error | None = None
        self.body_bytes = 0
        self.headers_at: float | None = None
        self.first_byte_at: float | None = None
        self.ended_at: float | None = None
        self.chunk_times: list[float] | None = [] if record_chunk_times else None
        self._changed = asyncio.Event()

    @property
    def done(self) -> bool:
        """The server will send nothing more on this stream."""
        return self.ended or self.error is not None

    def on_headers(self, headers: Headers, now: float) -> None:
        self.status = int(dict(headers)[":status"])
        self.headers = [(name, value) for name, value in headers if not name.startswith(":")]
        self.headers_at = now
        self._changed.set()

    def on_data(self, data: bytes, flow_length: int, now: float) -> None:
        self.chunks.append((data, flow_length))
        self.body_bytes += len(data)
        if self.first_byte_at is None:
            self.first_byte_at = now
        if self.chunk_times is not None:
            self.chunk_times.append(now)
        self._changed.set()

    def on_end(self, now: float) -> None:
        self.ended = True
        self.ended_at = now
        self._changed.set()

    def fail(self, error: H2Error) -> None:
        if not self.done:
            self.error = error
            self._changed.set()

    async def wait_headers(self) -> None:
        while self.status is None:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def next_chunk(self) -> tuple[bytes, int] | None:
        """The next buffered chunk, None at the end; data before an error is delivered first."""
        while not self.chunks:
            if self.ended:
                return None
            if self.error is not None:
                raise self.error
            await self._wait()
        return self.chunks.popleft()

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()


class H2Stream:
    """One request's response: status and headers, then the body as it arrives.

    Use it as `async with stream:` (or call `aclose`): leaving early resets the
    stream, so the server stops working on it. Cancelling a task blocked in
    `read_chunk` resets it too. Times are `time.monotonic()` values.
    """

    def __init__(self, conn: H2Connection, state: _StreamState, started_at: float) -> None:
        self._conn = conn
        self._state = state
        self._closed = False
        # Set by H2Client: sends the request again, at most once, on a retryable failure.
        self._replay: Callable[[], Awaitable[H2Stream]] | None = None
        self.started_at = started_at

    @property
    def stream_id(self) -> int:
        return self._state.stream_id

    @property
    def status(self) -> int:
        return self._state.status or 0

    @property
    def headers(self) -> Headers:
        return self._state.headers

    @property
    def trailers(self) -> Headers:
        return self._state.trailers

    @property
    def headers_at(self) -> float | None:
        return self._state.headers_at

    @property
    def first_byte_at(self) -> float | None:
        """When the first body byte arrived (the reader task's clock, per socket read)."""
        return self._state.first_byte_at

    @property
    def ended_at(self) -> float | None:
        return self._state.ended_at

    @property
    def chunk_times(self) -> list[float] | None:
        """Arrival time of each DATA frame, if the request asked to record them."""
        return self._state.chunk_times

    @property
    def body_bytes(self) -> int:
        """Body bytes received so far (read or still buffered)."""
        return self._state.body_bytes

    @property
    def finished(self) -> bool:
        """The server has sent the whole response, or the stream failed or was reset."""
        return self._state.done

    async def read_chunk(self) -> bytes:
        """The next body chunk as it arrived, or b"" at the end.

        Raises StreamReset or ConnectionLost. Cancelling the caller resets the stream.
        """
        while True:
            try:
                item = await self._state.next_chunk()
            except asyncio.CancelledError:
                self._cancel()
                raise
            except H2Error as exc:
                if self._replay is None or not exc.retryable:
                    raise
                await self._retry(exc)
                continue
            if item is None:
                return b""
            data, flow_length = item
            self._conn._ack(self.stream_id, flow_length)
            return data

    async def read_all(self) -> bytes:
        """The rest of the body."""
        parts = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def __aiter__(self) -> H2Stream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.read_chunk()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def reset(self, error_code: int = ErrorCodes.CANCEL) -> None:
        """Send RST_STREAM (CANCEL by default) now and free the stream; later reads raise."""
        self._closed = True
        self._conn._reset_stream(self._state, error_code)

    async def aclose(self) -> None:
        """Done with the stream: reset it if the server is still sending, free it."""
        if not self._closed:
            self._closed = True
            self._conn._close_stream(self._state)

    async def __aenter__(self) -> H2Stream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _cancel(self) -> None:
        if not self._state.done:
            self._conn._reset_stream(self._state, ErrorCodes.CANCEL)

    async def _retry(self, error: H2Error) -> None:
        """Send the request again on a fresh stream and continue reading from it.

        Only before any body byte arrived (`retryable` says so), and only if the
        new response has the status the caller has already seen.
        """
        replay, self._replay = self._replay, None
        assert replay is not None
        fresh = await replay()
        if fresh.status != self.status:
            await fresh.aclose()
            raise error
        self._conn, self._state = fresh._conn, fresh._state

    def __repr__(self) -> str:
        state = "reset" if self._state.error else "ended" if self._state.ended else "open"
        return (
            f"<H2Stream id={self.stream_id} status={self.status} {state} body={self.body_bytes}B>"
        )


class H2Connection(ClosedOnExit):
    """An HTTP/2 client connection: h2c with prior knowledge, or TLS with ALPN "h2".

    Open with `await H2Connection.open(host, port)`; close with `await conn.close()`
    or `async with`. Requests beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS
    wait for a free stream; after a GOAWAY the connection takes no new request.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        port: int,
        tls: bool,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._tls = tls
        self._scheme = "https" if tls else "http"
        self._authority = f"{host}:{port}"
        self._h2 = _ClientH2(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        self._streams: dict[int, _StreamState] = {}  # streams the server has not finished
        self._settings_received = asyncio.Event()
        self._slot_freed = asyncio.Event()  # a stream closed, or the server raised its limit
        self._window_opened = asyncio.Event()  # the server gave us send window, or a stream ended
        self._goaway_last_id: int | None = None
        self._failure: ConnectionLost | None = None
        self._closing = False
        self._reader_task: asyncio.Task[None] | None = None
        self.requests_started = 0

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 10.0,
    ) -> H2Connection:
        """Connect, and return once the server's HTTP/2 SETTINGS arrived.

        With `ssl`, ALPN "h2" is set on the context and required of the server.
        Raises ConnectError.
        """
        reader, writer = await _connect(host, port, ssl, server_hostname, connect_timeout)
        conn = cls(reader, writer, host, port, tls=ssl is not None)
        try:
            async with asyncio.timeout(connect_timeout):
                await conn._handshake()
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, TimeoutError):
                raise ConnectError(
                    f"{conn._authority}: no HTTP/2 SETTINGS from the server"
                ) from exc
            raise
        return conn

    @property
    def is_available(self) -> bool:
        """Takes new requests: open, no GOAWAY received, not closing."""
        return self._failure is None and self._goaway_last_id is None and not self._closing

    @property
    def active_streams(self) -> int:
        """Streams the server has not finished yet."""
        return len(self._streams)

    @property
    def max_concurrent_streams(self) -> int:
        """The server's SETTINGS_MAX_CONCURRENT_STREAMS."""
        return int(self._h2.remote_settings.max_concurrent_streams)

    @property
    def goaway_last_stream_id(self) -> int | None:
        return self._goaway_last_id

    async def request(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        authority: str | None = None,
        *,
        record_chunk_times: bool = False,
    ) -> H2Stream:
        """Send a request and return its stream once the response headers arrive.

        Waits for a free stream if the server's concurrency limit is reached.
        Failing or being cancelled before the headers resets the stream.
        """
        started_at = time.monotonic()
        self.requests_started += 1  # before any await: H2Client's budget check relies on it
        headers = list(headers)
        authority = authority or next(
            (v for k, v in headers if k.lower() == "host"), self._authority
        )
        block = build_request_headers(method, self._scheme, authority, path, headers, len(body))
        # 1. Wait for a stream slot, then send HEADERS with no await in between:
        #    nobody can take the slot we saw free.
        await self._acquire_slot()
        state = self._send_headers(
            block, end_stream=not body, record_chunk_times=record_chunk_times
        )
        stream = H2Stream(self, state, started_at)
        # 2. Body under flow control, then the response headers. Whatever
        #    interrupts us, the caller never gets the stream, so reset it here.
        try:
            if body:
                await self._send_body(state, body)
            await state.wait_headers()
        except BaseException:
            self._reset_stream(state, ErrorCodes.CANCEL)
            raise
        return stream

    async def close(self) -> None:
        """GOAWAY, stop the reader task, close the socket and wait for it.

        Streams still open fail with ConnectionLost; the server sees them all end.
        """
        if self._closing:
            return
        self._closing = True
        try:
            if self._reader_task is not None:
                self._reader_task.cancel()
                await asyncio.wait({self._reader_task})
        finally:
            self._fail("connection closed by the client")
            self._shutdown_transport()
            await self._wait_transport_closed()

    def __repr__(self) -> str:
        if self._failure is not None:
            state = "closed"
        elif self._goaway_last_id is not None:
            state = f"draining (GOAWAY last_stream_id={self._goaway_last_id})"
        else:
            state = "open"
        limit = self._h2.remote_settings.max_concurrent_streams
        streams = f"{len(self._streams)}/{limit}"
        return f"<H2Connection {self._scheme}://{self._authority} {state} streams={streams}>"

    # -- setting up ----------------------------------------------------------

    async def _handshake(self) -> None:
        if self._tls:
            ssl_object = self._writer.get_extra_info("ssl_object")
            protocol = ssl_object.selected_alpn_protocol() if ssl_object else None
            if protocol != "h2":
                raise ConnectError(
                    f"{self._authority}: server did not negotiate h2 (ALPN {protocol!r})"
                )
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - DEFAULT_WINDOW)
        self._flush()
        self._reader_task = asyncio.create_task(
            self._read_loop(), name=f"h2-reader {self._authority}"
        )
        # The server's first frame is SETTINGS; until it arrives we do not know
        # its stream limit, and opening one stream too many kills the connection.
        await self._settings_received.wait()
        if self._failure is not None:
            raise ConnectError(f"{self._authority}: HTTP/2 handshake failed: {self._failure}")

    # -- sending ---------------------------------------------------------------

    def _check_usable(self) -> None:
        """Raise if a new request cannot go out here; it was never sent, so it may be retried."""
        if self._failure is not None or self._closing:
            raise ConnectionLost(f"{self._authority}: connection is closed", retryable=True)
        if self._goaway_last_id is not None:
            raise ConnectionLost(f"{self._authority}: server sent GOAWAY", retryable=True)

    async def _acquire_slot(self) -> None:
        # Stay within SETTINGS_MAX_CONCURRENT_STREAMS: Hypercorn kills the whole
        # connection when a client goes over it (hypercorn#335).
        while True:
            self._check_usable()
            limit = self._h2.remote_settings.max_concurrent_streams
            if limit == 0 and not self._streams:
                raise ConnectionLost(
                    f"{self._authority}: server allows no new stream", retryable=True
                )
            if self._h2.open_outbound_streams < limit:
                return
            # Every close, reset or settings change sets the event; each waiter re-checks.
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def _send_headers(
        self, block: Headers, *, end_stream: bool, record_chunk_times: bool
    ) -> _StreamState:
        stream_id = self._h2.get_next_available_stream_id()
        try:
            self._h2.send_headers(stream_id, block, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            raise H2Error(f"cannot send request headers: {exc}") from exc
        state = _StreamState(stream_id, record_chunk_times)
        self._streams[stream_id] = state
        self._flush()
        return state

    async def _send_body(self, state: _StreamState, body: bytes) -> None:
        try:
            await self._send_data(state, memoryview(body))
        except h2.exceptions.ProtocolError as exc:
            raise H2Error(f"stream {state.stream_id}: cannot send the body: {exc}") from exc

    async def _send_data(self, state: _StreamState, view: memoryview) -> None:
        """Send the body within the server's stream and connection windows, then END_STREAM."""
        while view:
            if state.done:
                # The server answered (or reset) before reading the whole body. A
                # complete response ends the exchange (RFC 9113 8.1): close our side
                # but keep what it sent.
                self._send_rst(state.stream_id, ErrorCodes.NO_ERROR)
                return
            window = self._h2.local_flow_control_window(state.stream_id)
            size = min(window, self._h2.max_outbound_frame_size, len(view))
            if size <= 0:
                # Window spent: the reader task sets the event on WINDOW_UPDATE,
                # on a SETTINGS change and when any stream ends or resets.
                self._window_opened.clear()
                await self._window_opened.wait()
                continue
            self._h2.send_data(state.stream_id, bytes(view[:size]))
            view = view[size:]
            self._flush()
            await self._drain()
        self._h2.end_stream(state.stream_id)
        self._flush()

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except OSError as exc:
            raise ConnectionLost(
                f"{self._authority}: connection lost while sending: {exc!r}"
            ) from exc

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    # -- called by H2Stream ------------------------------------------------------

    def _ack(self, stream_id: int, size: int) -> None:
        """Hand consumed bytes back to the server's send window (batched by h2)."""
        if size and self._failure is None:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.acknowledge_received_data(size, stream_id)
            self._flush()

    def _reset_stream(self, state: _StreamState, error_code: int) -> None:
        """Send RST_STREAM now and free the stream. Synchronous, so a cancelled
        task's cleanup always gets it onto the socket."""
        self._streams.pop(state.stream_id, None)
        state.fail(StreamReset(state.stream_id, error_code, remote=False))
        self._send_rst(state.stream_id, error_code)
        self._release(state)

    def _send_rst(self, stream_id: int, error_code: int) -> None:
        if self._failure is None:
            # Already closed both ways (the response ended): nothing to cancel.
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.reset_stream(stream_id, error_code)
            self._flush()
        self._slot_freed.set()
        self._window_opened.set()
        if self._drained():
            self._shutdown_transport()  # after GOAWAY, the last stream is gone

    def _close_stream(self, state: _StreamState) -> None:
        if state.done:
            self._release(state)
        else:
            self._reset_stream(state, ErrorCodes.CANCEL)

    def _release(self, state: _StreamState) -> None:
        """Unread buffered bytes still hold connection window: give it back."""
        unread = sum(flow_length for _, flow_length in state.chunks)
        state.chunks.clear()
        self._ack(state.stream_id, unread)

    # -- receiving (the reader task) ---------------------------------------------

    async def _read_loop(self) -> None:
        """The connection's only reader: socket bytes -> h2 events -> stream state."""
        reason, cause = "server closed the connection", None
        try:
            while not self._drained():
                data = await self._reader.read(READ_SIZE)
                if not data:
                    break
                self._receive(data)
        except ConnectionLost as exc:
            reason, cause = str(exc), exc.__cause__
        except OSError as exc:
            reason, cause = f"connection error: {exc!r}", exc
        except Exception as exc:  # a bug here must not leave streams hanging
            reason, cause = f"internal error: {exc!r}", exc
        finally:
            if self._closing:
                reason = "connection closed by the client"
            elif self._drained():
                reason = "connection finished after GOAWAY"
            self._fail(reason, cause)
            self._shutdown_transport()

    def _drained(self) -> bool:
        return self._goaway_last_id is not None and not self._streams

    def _receive(self, data: bytes) -> None:
        now = time.monotonic()
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._flush()  # h2 queued a GOAWAY telling the server why
            raise ConnectionLost(f"HTTP/2 protocol error: {exc}") from exc
        for event in events:
            self._dispatch(event, now)
        self._flush()

    def _dispatch(self, event: h2.events.Event, now: float) -> None:
        state = self._streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.DataReceived):
            if state is not None and event.data:
                state.on_data(event.data, event.flow_controlled_length, now)
            else:  # nobody will read it (padding only, or a freed stream)
                self._ack(event.stream_id, event.flow_controlled_length)
        elif isinstance(event, h2.events.ResponseReceived) and state is not None:
            state.on_headers(_text(event.headers), now)
        elif isinstance(event, h2.events.TrailersReceived) and state is not None:
            state.trailers = _text(event.headers)
        elif isinstance(event, h2.events.StreamEnded) and state is not None:
            state.on_end(now)
            self._forget(state)
        elif isinstance(event, h2.events.StreamReset) and state is not None:
            state.fail(StreamReset(state.stream_id, event.error_code))
            self._forget(state)
        elif isinstance(event, h2.events.WindowUpdated):
            self._window_opened.set()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._settings_received.set()
            self._slot_freed.set()
            self._window_opened.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway(event.last_stream_id or 0, event.error_code or 0)

    def _forget(self, state: _StreamState) -> None:
        self._streams.pop(state.stream_id, None)
        self._slot_freed.set()
        self._window_opened.set()

    def _on_goaway(self, last_stream_id: int, error_code: int) -> None:
        if self._goaway_last_id is None or last_stream_id < self._goaway_last_id:
            self._goaway_last_id = last_stream_id
        # 1. Streams above last_stream_id were never processed: fail them as retryable.
        for stream_id in [sid for sid in self._streams if sid > last_stream_id]:
            message = f"stream {stream_id} not processed: server sent GOAWAY"
            self._streams.pop(stream_id).fail(ConnectionLost(message, retryable=True))
        if error_code != ErrorCodes.NO_ERROR:
            raise ConnectionLost(f"server sent GOAWAY ({error_name(error_code)})")
        # 2. The rest may finish here. Probe with a PING: a draining server
        #    answers it; Hypercorn 0.18 can send nothing after its own GOAWAY
        #    (its streams stall), takes the PING as a protocol error and closes
        #    the socket, so those streams fail now (retryable if no body byte
        #    came) instead of hanging until its keep-alive timeout.
        if self._streams:
            self._h2.ping(PING_PAYLOAD)
        # 3. Requests waiting for a slot must go to another connection.
        self._slot_freed.set()

    def _fail(self, reason: str, cause: BaseException | None = None) -> None:
        """Mark the connection dead and fail every stream the server has not finished."""
        if self._failure is not None:
            return
        self._failure = ConnectionLost(f"{self._authority}: {reason}")
        self._failure.__cause__ = cause
        after_goaway = self._goaway_last_id is not None
        for state in self._streams.values():
            # After a GOAWAY, a stream with no body byte yet is one the server
            # dropped while shutting down: the caller may send it again.
            error = ConnectionLost(
                f"stream {state.stream_id}: {reason}",
                retryable=after_goaway and state.body_bytes == 0,
            )
            error.__cause__ = cause
            state.fail(error)
        self._streams.clear()
        for event in (self._settings_received, self._slot_freed, self._window_opened):
            event.set()

    def _shutdown_transport(self) -> None:
        if self._writer.is_closing():
            return
        if self._reader_task is not None:  # the preface went out: we speak HTTP/2 here
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection()  # a polite GOAWAY, unless h2 already sent one
            self._flush()
        self._writer.close()

    async def _wait_transport_closed(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()
        except OSError:
            pass  # the peer was already gone; the socket is closed either way


async def _connect(
    host: str,
    port: int,
    tls: ssl_module.SSLContext | None,
    server_hostname: str | None,
    connect_timeout: float,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    extra: dict[str, Any] = {}
    if tls is not None:
        tls.set_alpn_protocols(["h2"])
        extra = {"server_hostname": server_hostname, "ssl_shutdown_timeout": CLOSE_TIMEOUT}
    try:
        async with asyncio.timeout(connect_timeout):
            return await asyncio.open_connection(host, port, ssl=tls, limit=READ_SIZE, **extra)
    except OSError as exc:  # TimeoutError and ssl.SSLError included
        raise ConnectError(f"cannot connect to {host}:{port}: {exc!r}") from exc


def _text(headers: Iterable[Header]) -> Headers:
    """h2 decodes headers to str with header_encoding set; mypy sees bytes too."""
    return [
        (
            name.decode() if isinstance(name, bytes) else name,
            value.decode() if isinstance(value, bytes) else value,
        )
        for name, value in headers
    ]
