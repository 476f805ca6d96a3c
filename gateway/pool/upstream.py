"""Pooled HTTP/1.1 connections to Ollama backends, over aiohttp.

One `aiohttp.ClientSession` serves every backend: its connector keeps a list of
idle keep-alive connections per (host, port), and taking one is a pop from the
end of that list, O(1) in the number of connections. (httpx's pool scans every
connection on each request, which docs/ARCHITECTURE.md records at ~60% of a proxy's CPU.)

Errors are mapped here, at the boundary, into the gateway's tree:

    UpstreamError (gateway.errors, 502)
    ├── UpstreamConnectError    could not connect; nothing was sent, safe to retry elsewhere
    │   └── UpstreamConnectTimeout (504)  no connection within the connect timeout
    └── UpstreamDisconnected    the backend closed or reset the connection
    UpstreamTimeout (504)       no byte within the read timeout

One context manager, `map_exceptions`, does the mapping around every call into
aiohttp (sending, reading a body, a probe), so each edge maps alike.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import aiohttp

from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.pool.backends import Backend
from gateway.settings import Timeouts


class UpstreamConnectError(UpstreamError):
    """No connection could be made: the backend never saw the request."""


class UpstreamConnectTimeout(UpstreamConnectError):
    """The backend neither accepted nor refused a connection in time (stuck, backlog full).

    A connect error, so the relay ejects the backend and tries another: the
    request never left. Still a 504 when it is the answer a client gets.
    """

    status = UpstreamTimeout.status
    code = UpstreamTimeout.code


class UpstreamDisconnected(UpstreamError):
    """The backend dropped the connection (killed, restarted, reset)."""


class map_exceptions:
    """aiohttp's exceptions raised inside, re-raised as the gateway's (httpcore's shape).

    Most specific first: aiohttp's connect timeout is also a ServerTimeoutError,
    a TimeoutError and a ClientError, and must stay a connect error. `timed_out`
    is the message of a read timeout, which only the caller can word.
    Anything else (ours, cancellation, a bug) passes through untouched.
    A class, not a generator: it is entered twice per request on the hot path.
    """

    __slots__ = ("timed_out",)

    def __init__(self, *, timed_out: str) -> None:
        self.timed_out = timed_out

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, Exception):
            return
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            raise UpstreamConnectTimeout("cannot connect to backend: connect timed out") from exc
        if isinstance(exc, aiohttp.ClientConnectorError):
            message = f"cannot connect to backend: {_connect_failure(exc)}"
            raise UpstreamConnectError(message) from exc
        if isinstance(exc, TimeoutError):  # aiohttp's sock_read, or the caller's timeout
            raise UpstreamTimeout(self.timed_out) from exc
        if isinstance(exc, aiohttp.ClientError):
            raise UpstreamDisconnected(f"backend connection lost: {type(exc).__name__}") from exc


def _connect_failure(exc: aiohttp.ClientConnectorError) -> str:
    # asyncio's strerror names the address ("Connect call failed ('10.0.0.5',
    # 11434)") and this text reaches clients: the errno's own words say enough.
    errno = exc.os_error.errno
    if errno is not None and errno > 0:
        return os.strerror(errno)
    return exc.strerror or type(exc).__name__


class UpstreamResponse:
    """A backend's response, streamed. Close it in `finally`, always."""

    __slots__ = ("_response", "backend", "closed", "complete")

    def __init__(self, backend: Backend, response: aiohttp.ClientResponse) -> None:
        self.backend = backend
        self._response = response
        self.complete = False
        self.closed = False

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def content_type(self) -> bytes:
        return self._response.headers.get("Content-Type", "application/json").encode("latin-1")

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive, one read at a time; no re-buffering."""
        content = self._response.content
        # Entered once per body, not per chunk: this loop runs for every token.
        with map_exceptions(timed_out="backend stopped sending tokens"):
            while True:
                chunk = await content.readany()
                if not chunk:
                    self.complete = True
                    return
                yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        """Return the connection to the pool if the body was read, else drop it.

        Dropping is what stops the generation: Ollama notices the closed
        socket between two tokens and aborts.
        """
        self.closed = True
        if self.complete:
            self._response.release()
        else:
            self._response.close()


class Upstream:
    """Owns the connection pool to every backend; opened and closed by the lifespan."""

    def __init__(self, timeouts: Timeouts, on_connection_opened: Callable[[], None]) -> None:
        self._timeouts = timeouts
        self._on_connection_opened = on_connection_opened
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Upstream:
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(self._connection_created)
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=None
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=[trace],
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self._timeouts.connect, sock_read=self._timeouts.read
            ),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Upstream used outside its lifespan")
        return self._session

    async def post(self, backend: Backend, path: str, body: bytes) -> UpstreamResponse:
        """Send a request; returns once the response headers are in."""
        with map_exceptions(timed_out="backend did not answer in time"):
            response = await self.session.post(
                backend.url + path,
                data=body,
                headers={"Content-Type": "application/json"},
            )
        return UpstreamResponse(backend, response)

    async def get_json(self, backend: Backend, path: str, within: float) -> object:
        """A small JSON GET, for probes and model listings."""
        # Outside the timeout: the TimeoutError it raises on expiry is mapped too.
        with map_exceptions(timed_out=f"{path} did not answer in {within:g} s"):
            async with asyncio.timeout(within):
                async with self.session.get(backend.url + path) as response:
                    if response.status != 200:  # ours: passes the mapping untouched
                        raise UpstreamError(f"{path} answered {response.status}")
                    body = await response.read()
        try:
            return json.loads(body)
        except ValueError as exc:
            raise UpstreamError(f"{path} answered invalid JSON") from exc

    async def _connection_created(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceConnectionCreateEndParams,
    ) -> None:
        self._on_connection_opened()
