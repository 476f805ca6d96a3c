"""Pooled HTTP/1.1 connections to Ollama backends, over aiohttp.

One `aiohttp.ClientSession` serves every backend: its connector keeps a list of
idle keep-alive connections per (host, port), and taking one is a pop from the
end of that list, O(1) in the number of connections. (httpx's pool scans every
connection on each request, which DESIGN.md measured at ~60% of a proxy's CPU.)

Errors are mapped here, at the boundary, into the gateway's tree:

    UpstreamError (gateway.errors, 502)
    ├── UpstreamConnectError    could not connect; nothing was sent, safe to retry elsewhere
    └── UpstreamDisconnected    the backend closed or reset the connection
    UpstreamTimeout (504)       no byte within the read timeout
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace, TracebackType

import aiohttp

from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.pool.backends import Backend
from gateway.settings import Timeouts


class UpstreamConnectError(UpstreamError):
    """No connection could be made: the backend never saw the request."""


class UpstreamDisconnected(UpstreamError):
    """The backend dropped the connection (killed, restarted, reset)."""


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
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    self.complete = True
                    return
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout("backend stopped sending tokens") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamDisconnected(f"backend connection lost: {type(exc).__name__}") from exc

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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        try:
            response = await self.session.post(
                backend.url + path,
                data=body,
                headers={"Content-Type": "application/json"},
            )
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectError(f"cannot connect to backend: {exc.strerror}") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout("backend did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamDisconnected(f"backend connection lost: {type(exc).__name__}") from exc
        return UpstreamResponse(backend, response)

    async def get_json(self, backend: Backend, path: str, within: float) -> object:
        """A small JSON GET, for probes and model listings."""
        try:
            async with asyncio.timeout(within):
                async with self.session.get(backend.url + path) as response:
                    if response.status != 200:
                        raise UpstreamError(f"{path} answered {response.status}")
                    return json.loads(await response.read())
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{path} did not answer in {within:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectError(f"cannot connect to backend: {exc.strerror}") from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise UpstreamError(f"{path} failed: {type(exc).__name__}") from exc

    async def _connection_created(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceConnectionCreateEndParams,
    ) -> None:
        self._on_connection_opened()
