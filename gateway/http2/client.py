"""Ghostgate's own HTTP/2 client: used by the router's forward mode, the load
tests and the test suite. Import everything from here.

    H2Connection    one connection (gateway/http2/connection.py): h2c with prior knowledge
                    or TLS with ALPN "h2"; honours the server's stream limit and
                    flow control; a stream left early is reset for real
    H2Stream        one response: status, headers, body chunks as they arrive
    H2Client        one connection at a time, replaced on GOAWAY or loss; a
                    request the server did not process is sent again once

Exceptions (all from gateway/http2/connection.py)::

    H2Error              base; .retryable: re-sending the request is reasonable
    ├── ConnectError     TCP/TLS connect, ALPN "h2" or the server preface failed
    ├── ConnectionLost   the connection died or is going away under a request
    └── StreamReset      RST_STREAM on the stream; .error_code, .remote

Why not httpcore: its HTTP/2 client never sends RST_STREAM when a streamed
response is closed early, so the server never learns of the cancel (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from gateway.http2.connection import ConnectionLost, H2Connection, H2Error, H2Stream
from gateway.lifecycle import ClosedOnExit


class H2Client(ClosedOnExit):
    """An HTTP/2 client to one server that survives GOAWAY and connection loss.

    It holds one connection at a time. When the server sends GOAWAY, or the
    connection dies, new requests go to a fresh connection while streams the
    server promised to finish run to completion on the old one. A request the
    server did not process (REFUSED_STREAM, a stream id above GOAWAY's
    last_stream_id, or one it dropped after its GOAWAY before any body byte)
    is sent again once, transparently, on a new connection.

    `max_requests_per_connection` moves to a new connection after that many
    requests. Set it below the server's limit when the server is Hypercorn:
    Hypercorn's GOAWAY at `keep_alive_max_requests` stalls the stream that
    crossed it, which can be retried only if none of its body had arrived.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 10.0,
        max_requests_per_connection: int | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._connect_timeout = connect_timeout
        self._max_requests = max_requests_per_connection
        self._current: H2Connection | None = None
        self._retired: list[H2Connection] = []  # draining after GOAWAY, or dead
        self._lock = asyncio.Lock()
        self._closed = False
        self.connections_opened = 0
        self.retries = 0

    async def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        authority: str | None = None,
        *,
        record_chunk_times: bool = False,
    ) -> H2Stream:
        """Send a request; return its stream once the response headers arrive.

        Same contract as `H2Connection.request`, plus one transparent retry of
        a request the server did not process, here or while reading the body
        before its first byte.
        """
        send = partial(self._send, method, path, headers, body, authority, record_chunk_times)
        try:
            stream = await send()
        except H2Error as exc:
            if not exc.retryable:
                raise
            self.retries += 1
            return await send()  # the one retry is spent: no replay while reading
        stream._replay = partial(self._replay, send)
        return stream

    async def close(self) -> None:
        """Close every connection; streams still open fail with ConnectionLost."""
        self._closed = True
        async with self._lock:
            connections = [*self._retired, *([self._current] if self._current else [])]
            self._current, self._retired = None, []
        for conn in connections:
            await conn.close()

    def __repr__(self) -> str:
        return (
            f"<H2Client {self._host}:{self._port} current={self._current!r} "
            f"retired={len(self._retired)} opened={self.connections_opened} "
            f"retries={self.retries}>"
        )

    async def _send(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        authority: str | None,
        record_chunk_times: bool,
    ) -> H2Stream:
        conn = await self._connection()
        try:
            return await conn.request(
                method, path, headers, body, authority, record_chunk_times=record_chunk_times
            )
        except H2Error as exc:
            if exc.retryable:
                self._retire(conn)  # the retry goes to a new connection
            raise

    async def _replay(self, send: Callable[[], Awaitable[H2Stream]]) -> H2Stream:
        self.retries += 1
        return await send()

    async def _connection(self) -> H2Connection:
        """The connection for a new request, opening one if needed."""
        # 1. Fast path: the current connection still takes new streams.
        #    No await between this check and the request counting itself.
        conn = self._current
        if conn is not None and self._takes_requests(conn):
            return conn
        # 2. Slow path, one task at a time, so a burst of requests after a
        #    GOAWAY opens one connection, not one each.
        async with self._lock:
            if self._closed:
                raise ConnectionLost(f"{self._host}:{self._port}: client is closed")
            if self._current is not None and self._takes_requests(self._current):
                return self._current  # another task replaced it while we waited
            # 3. Retire the old connection: it keeps serving the streams the
            #    server promised to finish, and closes itself when they are done.
            if self._current is not None:
                self._retire(self._current)
            await self._close_finished()
            self._current = await H2Connection.open(
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._server_hostname,
                connect_timeout=self._connect_timeout,
            )
            self.connections_opened += 1
            return self._current

    def _takes_requests(self, conn: H2Connection) -> bool:
        budget_left = self._max_requests is None or conn.requests_started < self._max_requests
        return conn.is_available and budget_left

    def _retire(self, conn: H2Connection) -> None:
        if conn is self._current:
            self._retired.append(conn)
            self._current = None

    async def _close_finished(self) -> None:
        """Close retired connections that have no stream left (awaits their reader task)."""
        finished = [conn for conn in self._retired if conn.active_streams == 0]
        self._retired = [conn for conn in self._retired if conn.active_streams > 0]
        for conn in finished:
            await conn.close()
