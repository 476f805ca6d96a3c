"""The HTTP/2 client against a real Hypercorn 0.18 and against a raw h2 server.

Hypercorn shows what our servers will do (disconnect on RST_STREAM, GOAWAY
after keep_alive_max_requests, the stream limit); the raw h2 server shows the
frames themselves (RST_STREAM error codes) and scripts what Hypercorn cannot
(a draining GOAWAY, REFUSED_STREAM, a dropped socket).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from h2.errors import ErrorCodes
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hyperframe.frame import GoAwayFrame

from gateway.http2 import (
    ConnectError,
    ConnectionLost,
    H2Client,
    H2Connection,
    H2Stream,
    StreamReset,
    build_request_headers,
)

pytestmark = pytest.mark.anyio

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# -- a tiny raw ASGI app under Hypercorn ------------------------------------------


class StreamingApp:
    """/stream?n=&delay= streams n chunks; /echo returns the body; /slow counts
    concurrency; /big?size= sends size bytes. Records http.disconnect times."""

    def __init__(self) -> None:
        self.disconnects: list[tuple[str, float]] = []
        self.disconnected = asyncio.Event()
        self.inflight = 0
        self.max_inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        route = {"/stream": self.stream, "/echo": self.echo, "/slow": self.slow, "/big": self.big}
        await route[scope["path"]](query, receive, send)

    async def stream(self, query: dict[str, str], receive: Receive, send: Send) -> None:
        await asyncio.sleep(float(query.get("wait", "0")))  # like a prefill
        await _start(send)
        watcher = asyncio.create_task(self._watch(query.get("tag", ""), receive))
        try:
            for i in range(int(query.get("n", "5"))):
                if watcher.done():
                    return
                await _body(send, f"chunk {i}\n".encode(), more=True)
                await asyncio.sleep(float(query.get("delay", "0.01")))
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await _body(send, b"", more=False)

    async def _watch(self, tag: str, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnects.append((tag, time.monotonic()))
        self.disconnected.set()

    async def echo(self, query: dict[str, str], receive: Receive, send: Send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await _start(send)
        await _body(send, bytes(body), more=False)

    async def slow(self, query: dict[str, str], receive: Receive, send: Send) -> None:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await asyncio.sleep(0.02)
        finally:
            self.inflight -= 1
        await _start(send)
        await _body(send, b"ok", more=False)

    async def big(self, query: dict[str, str], receive: Receive, send: Send) -> None:
        await _start(send)
        size, block = int(query["size"]), b"x" * 65536
        for offset in range(0, size, len(block)):
            await _body(send, block[: size - offset], more=True)
        await _body(send, b"", more=False)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _start(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})


async def _body(send: Send, body: bytes, *, more: bool) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": more})


@asynccontextmanager
async def hypercorn(app: Any, **options: Any) -> AsyncIterator[int]:
    """Serve `app` on 127.0.0.1; yields the port (bound by us, handed over as fd://).

    Patched as a region's Hypercorn is (gateway/server/patches, applied for the
    whole session by tests/conftest.py), so these tests see what regions do."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.graceful_timeout = 1.0
    for name, value in options.items():
        setattr(config, name, value)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait, mode="asgi"))
    try:
        yield port
    finally:
        stop.set()
        await server


def assert_no_reader_task() -> None:
    leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("h2-reader")]
    assert leftover == []


async def wait_for(event: asyncio.Event, seconds: float = 1.0) -> None:
    async with asyncio.timeout(seconds):
        await event.wait()


# -- a raw h2 server, to see and script frames ---------------------------------------


class RawSession:
    """One connection of RawH2Server: the handler's way to send frames."""

    def __init__(self, number: int, writer: asyncio.StreamWriter) -> None:
        self.number = number  # 1 for the first connection
        self.writer = writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )

    def flush(self) -> None:
        if not self.writer.is_closing():
            self.writer.write(self.h2.data_to_send())

    def respond(self, stream_id: int, body: bytes | None = None) -> None:
        self.h2.send_headers(stream_id, [(":status", "200")], end_stream=body == b"")
        if body:
            self.h2.send_data(stream_id, body, end_stream=True)
        self.flush()

    def data(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        self.h2.send_data(stream_id, data, end_stream=end)
        self.flush()

    def goaway(self, last_stream_id: int) -> None:
        """A graceful GOAWAY written behind h2's back, so this side can keep sending
        (as nginx or Go do while draining; h2 itself would close, h2#1181)."""
        self.flush()
        self.writer.write(GoAwayFrame(0, last_stream_id=last_stream_id).serialize())

    def refuse(self, stream_id: int) -> None:
        self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
        self.flush()


Handler = Callable[[RawSession, int, dict[str, str]], Coroutine[Any, Any, None]]


class RawH2Server:
    """A scriptable HTTP/2 server on h2: a handler per request; records RST_STREAMs."""

    def __init__(self, handler: Handler, *, max_streams: int = 100, ack: bool = True) -> None:
        self.handler = handler
        self.max_streams = max_streams
        self.ack = ack  # False: never open the flow-control window for request bodies
        self.resets: list[tuple[int, int]] = []
        self.reset_seen = asyncio.Event()
        self.sessions: list[RawSession] = []
        self._connections: set[asyncio.Task[Any]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for task in self._handlers:
            task.cancel()
        for session in self.sessions:
            session.writer.close()  # ends each connection task (not cancelled: asyncio logs that)
        await asyncio.gather(*self._handlers, *self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track(self._connections, asyncio.current_task())
        session = RawSession(len(self.sessions) + 1, writer)
        self.sessions.append(session)
        session.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams},
        )
        session.h2.initiate_connection()
        session.flush()
        try:
            while data := await reader.read(65536):
                for event in session.h2.receive_data(data):
                    self._on_event(session, event)
                session.flush()
        except (OSError, h2.exceptions.ProtocolError):
            pass
        finally:
            writer.close()

    def _on_event(self, session: RawSession, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = {str(k): str(v) for k, v in event.headers}
            coro = self.handler(session, event.stream_id or 0, headers)
            self._track(self._handlers, asyncio.create_task(coro))
        elif isinstance(event, h2.events.StreamReset):
            self.resets.append((event.stream_id or 0, event.error_code or 0))
            self.reset_seen.set()
        elif isinstance(event, h2.events.DataReceived) and self.ack:
            session.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    @staticmethod
    def _track(tasks: set[asyncio.Task[Any]], task: asyncio.Task[Any] | None) -> None:
        assert task is not None
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def stream_forever(session: RawSession, stream_id: int, headers: dict[str, str]) -> None:
    session.respond(stream_id)
    try:
        for i in range(1000):
            session.data(stream_id, b"tick %d\n" % i)
            await asyncio.sleep(0.01)
    except h2.exceptions.ProtocolError:
        return  # the client reset the stream or closed the connection


# -- pure ------------------------------------------------------------------------


def test_request_headers_drop_connection_specific_ones() -> None:
    block = build_request_headers(
        "post",
        "http",
        "example:80",
        "/v1/x",
        [("Host", "h"), ("Connection", "keep-alive"), ("TE", "gzip"), ("X-Group", "a")],
        body_length=3,
    )
    assert block == [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "example:80"),
        (":path", "/v1/x"),
        ("x-group", "a"),
        ("content-length", "3"),
    ]


def test_refused_stream_is_retryable_other_resets_are_not() -> None:
    assert StreamReset(1, ErrorCodes.REFUSED_STREAM).retryable
    assert not StreamReset(1, ErrorCodes.CANCEL).retryable
    assert "CANCEL" in str(StreamReset(3, ErrorCodes.CANCEL, remote=False))


# -- against Hypercorn -----------------------------------------------------------


async def test_streamed_chunks_arrive_incrementally() -> None:
    app = StreamingApp()
    async with hypercorn(app) as port, await H2Connection.open("127.0.0.1", port) as conn:
        stream = await conn.request("GET", "/stream?n=5&delay=0.05", record_chunk_times=True)
        read_at, chunks = [], []
        async with stream:
            async for chunk in stream:
                read_at.append(time.monotonic())
                chunks.append(chunk)
        assert stream.status == 200
        assert b"".join(chunks) == b"".join(b"chunk %d\n" % i for i in range(5))
        assert read_at[-1] - read_at[0] > 0.15  # not buffered up to the end
        assert stream.chunk_times is not None and len(stream.chunk_times) == 5
        assert stream.first_byte_at is not None and stream.first_byte_at >= stream.started_at
        assert app.disconnects == []
    assert_no_reader_task()


async def test_post_body_larger_than_the_window_and_long_response() -> None:
    body = os.urandom(200_000)  # over Hypercorn's 65535-byte initial window
    async with hypercorn(StreamingApp()) as port:
        async with await H2Connection.open("127.0.0.1", port) as conn:
            echo = await conn.request("POST", "/echo", [("content-type", "x/y")], body)
            assert await echo.read_all() == body
            # Past our 16 MiB connection window: only works if reads hand it back.
            big = await conn.request("GET", f"/big?size={20_000_000}")
            assert len(await big.read_all()) == 20_000_000
            assert conn.active_streams == 0


async def test_reset_mid_stream_disconnects_the_app_and_keeps_the_connection() -> None:
    app = StreamingApp()
    async with hypercorn(app) as port, await H2Connection.open("127.0.0.1", port) as conn:
        stream = await conn.request("GET", "/stream?n=100&delay=0.01&tag=reset")
        assert await stream.read_chunk() == b"chunk 0\n"
        reset_at = time.monotonic()
        await stream.reset()
        await wait_for(app.disconnected)
        assert app.disconnects[0][0] == "reset"
        assert app.disconnects[0][1] - reset_at < 0.1
        with pytest.raises(StreamReset):
            await stream.read_chunk()
        assert conn.active_streams == 0 and conn.is_available
        again = await conn.request("GET", "/stream?n=3&delay=0")
        assert await again.read_all() == b"chunk 0\nchunk 1\nchunk 2\n"
    assert_no_reader_task()


async def test_cancelling_the_reading_task_resets_the_stream() -> None:
    app = StreamingApp()
    async with hypercorn(app) as port, await H2Connection.open("127.0.0.1", port) as conn:
        stream = await conn.request("GET", "/stream?n=100&delay=0.01&tag=cancel")
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in stream:
                first.set()

        task = asyncio.create_task(consume())
        await wait_for(first)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await wait_for(app.disconnected)
        assert [tag for tag, _ in app.disconnects] == ["cancel"]
        assert conn.active_streams == 0


async def test_streams_beyond_the_server_limit_wait_for_a_slot() -> None:
    app = StreamingApp()
    async with hypercorn(app, h2_max_concurrent_streams=10) as port:
        async with await H2Connection.open("127.0.0.1", port) as conn:
            assert conn.max_concurrent_streams == 10

            async def get() -> bytes:
                async with await conn.request("GET", "/slow") as stream:
                    return await stream.read_all()

            bodies = await asyncio.gather(*(get() for _ in range(50)))
            assert bodies == [b"ok"] * 50
            assert app.max_inflight == 10
            assert conn.is_available


async def test_client_survives_goaway_after_keep_alive_max_requests() -> None:
    # Hypercorn sends GOAWAY on a connection's 6th request and never answers
    # it. The client's PING probe gets the socket closed at once; nothing of
    # the response had arrived (it starts after a "prefill"), so it goes out
    # again on a new connection.
    async with hypercorn(StreamingApp(), keep_alive_max_requests=5) as port:
        async with H2Client("127.0.0.1", port) as client:
            for i in range(20):
                stream = await client.request("GET", f"/stream?n=2&delay=0&wait=0.02&tag={i}")
                async with stream:
                    assert await stream.read_all() == b"chunk 0\nchunk 1\n"
            assert (client.connections_opened, client.retries) == (4, 3)
    assert_no_reader_task()


async def test_hypercorn_stall_after_goaway_fails_fast_once_body_began() -> None:
    # The crossing stream got part of its body before the GOAWAY: not retryable,
    # but it fails at once instead of hanging until Hypercorn's idle timeout.
    async with hypercorn(StreamingApp(), keep_alive_max_requests=1) as port:
        async with await H2Connection.open("127.0.0.1", port) as conn:
            assert await (await conn.request("GET", "/stream?n=2&delay=0")).read_all()
            stream = await conn.request("GET", "/stream?n=2&delay=0.05")
            started = time.monotonic()
            with pytest.raises(ConnectionLost) as caught:
                await stream.read_all()
            assert not caught.value.retryable and stream.body_bytes > 0
            assert time.monotonic() - started < 1.0
            assert conn.goaway_last_stream_id == 3


async def test_client_rotates_connections_below_the_server_request_limit() -> None:
    async with hypercorn(StreamingApp(), keep_alive_max_requests=5) as port:
        async with H2Client("127.0.0.1", port, max_requests_per_connection=5) as client:
            for _ in range(20):
                async with await client.request("GET", "/stream?n=2&delay=0") as stream:
                    assert await stream.read_all() == b"chunk 0\nchunk 1\n"
            assert (client.connections_opened, client.retries) == (4, 0)


async def test_client_reconnects_after_the_server_closed_an_idle_connection() -> None:
    async with hypercorn(StreamingApp(), keep_alive_timeout=0.1) as port:
        async with H2Client("127.0.0.1", port) as client:
            for _ in range(2):
                async with await client.request("GET", "/stream?n=1&delay=0") as stream:
                    assert await stream.read_all() == b"chunk 0\n"
                await asyncio.sleep(0.3)  # Hypercorn closes it: EOF, no GOAWAY
            assert client.connections_opened == 2
    assert_no_reader_task()


async def test_tls_with_alpn_h2(tmp_path: Path) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(certfile))
    options = {"certfile": str(certfile), "keyfile": str(keyfile)}
    async with hypercorn(StreamingApp(), **options) as port:
        conn = await H2Connection.open("127.0.0.1", port, ssl=context, server_hostname="localhost")
        async with conn:
            stream = await conn.request("GET", "/stream?n=2&delay=0")
            assert await stream.read_all() == b"chunk 0\nchunk 1\n"
            assert "https://" in repr(conn)
    assert_no_reader_task()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


async def test_connect_error_when_nothing_listens() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConnectError):
        await H2Connection.open("127.0.0.1", port, connect_timeout=2)


# -- raw frames --------------------------------------------------------------------


async def _reset_by_reset(stream: H2Stream) -> None:
    await stream.read_chunk()
    await stream.reset()


async def _reset_by_leaving_async_with(stream: H2Stream) -> None:
    async with stream:
        async for _ in stream:
            break


async def _reset_by_cancelling_the_reader(stream: H2Stream) -> None:
    task = asyncio.create_task(stream.read_all())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize(
    "leave", [_reset_by_reset, _reset_by_leaving_async_with, _reset_by_cancelling_the_reader]
)
async def test_rst_stream_cancel_is_on_the_wire(
    leave: Callable[[H2Stream], Awaitable[None]],
) -> None:
    server = RawH2Server(stream_forever)
    async with server as port, await H2Connection.open("127.0.0.1", port) as conn:
        stream = await conn.request("GET", "/forever")
        await leave(stream)
        await wait_for(server.reset_seen)
        assert server.resets == [(stream.stream_id, ErrorCodes.CANCEL)]
        assert conn.active_streams == 0


async def test_graceful_goaway_finishes_old_streams_and_retries_unprocessed() -> None:
    second_arrived = asyncio.Event()

    async def handler(session: RawSession, stream_id: int, headers: dict[str, str]) -> None:
        if headers[":path"] == "/b":
            if session.number == 1:
                second_arrived.set()  # above last_stream_id: never answered here
            else:
                session.respond(stream_id, b"b")
            return
        session.respond(stream_id)
        session.data(stream_id, b"a1")
        await second_arrived.wait()
        session.goaway(last_stream_id=stream_id)
        session.data(stream_id, b"a2", end=True)  # the same read as the GOAWAY

    async with RawH2Server(handler) as port, H2Client("127.0.0.1", port) as client:
        a = await client.request("GET", "/a")
        b = await client.request("GET", "/b")
        assert await b.read_all() == b"b"
        assert await a.read_all() == b"a1a2"
        assert (client.connections_opened, client.retries) == (2, 1)
    assert_no_reader_task()


async def test_refused_stream_is_sent_again_on_a_new_connection() -> None:
    async def handler(session: RawSession, stream_id: int, headers: dict[str, str]) -> None:
        if session.number <= 2:  # the H2Connection's, then the H2Client's first
            session.refuse(stream_id)
        else:
            session.respond(stream_id, b"ok")

    async with RawH2Server(handler) as port:
        async with await H2Connection.open("127.0.0.1", port) as conn:
            with pytest.raises(StreamReset) as caught:
                await conn.request("GET", "/")
            assert caught.value.error_code == ErrorCodes.REFUSED_STREAM
            assert caught.value.retryable
        async with H2Client("127.0.0.1", port) as client:
            stream = await client.request("GET", "/")
            assert await stream.read_all() == b"ok"
            assert (client.connections_opened, client.retries) == (2, 1)


async def test_connection_lost_mid_body_raises_and_is_not_retried() -> None:
    async def handler(session: RawSession, stream_id: int, headers: dict[str, str]) -> None:
        session.respond(stream_id)
        session.data(stream_id, b"part")
        await asyncio.sleep(0.02)
        session.writer.transport.abort()

    async with RawH2Server(handler) as port, H2Client("127.0.0.1", port) as client:
        stream = await client.request("GET", "/")
        assert await stream.read_chunk() == b"part"
        with pytest.raises(ConnectionLost) as caught:
            await stream.read_chunk()
        assert not caught.value.retryable
        assert client.retries == 0


async def test_cancel_before_the_response_headers_resets_the_stream() -> None:
    async def never_answer(session: RawSession, stream_id: int, headers: dict[str, str]) -> None:
        await asyncio.sleep(10)  # a long prefill

    server = RawH2Server(never_answer)
    async with server as port, await H2Connection.open("127.0.0.1", port) as conn:
        task = asyncio.create_task(conn.request("GET", "/"))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await wait_for(server.reset_seen)
        assert server.resets == [(1, ErrorCodes.CANCEL)]
        assert conn.active_streams == 0


async def test_cancel_while_queued_for_a_slot_sends_nothing() -> None:
    server = RawH2Server(stream_forever, max_streams=1)
    async with server as port, await H2Connection.open("127.0.0.1", port) as conn:
        first = await conn.request("GET", "/first")
        queued = asyncio.create_task(conn.request("GET", "/queued"))
        await asyncio.sleep(0.05)
        assert not queued.done()  # waiting for the one slot
        queued.cancel()
        await asyncio.gather(queued, return_exceptions=True)
        await first.aclose()
        async with await conn.request("GET", "/third") as third:
            assert third.stream_id == 3  # the cancelled request never took an id
            assert await third.read_chunk() == b"tick 0\n"
        await wait_for(server.reset_seen)
        assert server.resets[0] == (1, ErrorCodes.CANCEL)


async def test_early_response_stops_the_body_upload() -> None:
    async def answer_at_once(session: RawSession, stream_id: int, headers: dict[str, str]) -> None:
        session.respond(stream_id, b"too large")

    server = RawH2Server(answer_at_once, ack=False)  # the upload stalls at 64 KiB
    async with server as port, await H2Connection.open("127.0.0.1", port) as conn:
        stream = await conn.request("POST", "/", body=b"x" * 500_000)
        assert await stream.read_all() == b"too large"
        await wait_for(server.reset_seen)
        assert server.resets == [(1, ErrorCodes.NO_ERROR)]  # RFC 9113 8.1
