"""aiohttp's exceptions become the gateway's at one edge, `map_exceptions`: first the
mapping itself, without sockets, then each I/O call on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.pool.backends import Backend
from gateway.pool.upstream import (
    Upstream,
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamDisconnected,
    map_exceptions,
)
from gateway.settings import Timeouts
from tests.gateway.pool import loopback

pytestmark = pytest.mark.anyio

FAST = Timeouts(connect=0.2, read=0.3)


def mapped(exc: BaseException) -> BaseException:
    """What `map_exceptions` lets out when `exc` is raised inside it."""
    with pytest.raises(BaseException) as info, map_exceptions(timed_out="stalled"):
        raise exc
    return info.value


@pytest.mark.parametrize(
    ("foreign", "ours", "message"),
    [
        # A connect timeout is also a ServerTimeoutError and a TimeoutError: it
        # must not be taken for a read timeout, or it is not retried elsewhere.
        (aiohttp.ConnectionTimeoutError("x"), UpstreamConnectTimeout, "cannot connect"),
        (aiohttp.SocketTimeoutError("x"), UpstreamTimeout, "stalled"),
        (TimeoutError(), UpstreamTimeout, "stalled"),
        (aiohttp.ServerDisconnectedError(), UpstreamDisconnected, "ServerDisconnectedError"),
        (aiohttp.ClientPayloadError("x"), UpstreamDisconnected, "ClientPayloadError"),
    ],
)
def test_aiohttp_errors_map_into_the_tree_with_their_cause(
    foreign: Exception, ours: type[GatewayError], message: str
) -> None:
    error = mapped(foreign)
    assert type(error) is ours and message in str(error)
    assert error.__cause__ is foreign


def test_a_connect_timeout_is_a_connect_error_and_a_504() -> None:
    error = mapped(aiohttp.ConnectionTimeoutError("x"))
    assert isinstance(error, UpstreamConnectError)
    assert isinstance(error, GatewayError) and error.status == 504


@pytest.mark.parametrize(
    "other", [ValueError("x"), UpstreamError("ours already"), asyncio.CancelledError()]
)
def test_anything_else_passes_through_untouched(other: BaseException) -> None:
    assert mapped(other) is other


def refused_url() -> str:
    with socket.socket() as sock:  # bound, never listening: a connect is refused
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def backend(url: str) -> Backend:
    return Backend(url=url, slots=1, healthy=True)


async def test_post_to_a_closed_port_is_a_connect_error() -> None:
    async with Upstream(FAST, lambda: None) as upstream:
        with pytest.raises(UpstreamConnectError) as info:
            await upstream.post(backend(refused_url()), "/api/generate", b"{}")
    assert type(info.value) is UpstreamConnectError
    assert info.value.message == "cannot connect to backend: Connection refused"


async def test_post_to_a_backend_that_never_accepts_is_a_connect_timeout() -> None:
    with loopback.never_accepting() as url:
        async with Upstream(FAST, lambda: None) as upstream:
            async with asyncio.timeout(5):
                with pytest.raises(UpstreamConnectTimeout):
                    await upstream.post(backend(url), "/api/generate", b"{}")


async def test_a_body_cut_short_is_a_disconnect() -> None:
    async with loopback.backend() as url, Upstream(FAST, lambda: None) as upstream:
        response = await upstream.post(backend(url), "/cut", b"{}")
        try:
            with pytest.raises(UpstreamDisconnected, match="backend connection lost"):
                await response.read()
        finally:
            response.close()
    assert not response.complete


async def test_a_body_that_stalls_is_a_timeout() -> None:
    async with loopback.backend() as url, Upstream(FAST, lambda: None) as upstream:
        response = await upstream.post(backend(url), "/stall", b"{}")
        try:
            async with asyncio.timeout(5):
                with pytest.raises(UpstreamTimeout, match="stopped sending tokens"):
                    await response.read()
        finally:
            response.close()


async def test_get_json_parses_and_maps_errors() -> None:
    async with loopback.backend() as url, Upstream(FAST, lambda: None) as upstream:
        up = backend(url)
        assert await upstream.get_json(up, "/api/tags", 2.0) == {
            "models": [{"name": loopback.MODEL}]
        }
        with pytest.raises(UpstreamError, match="/broken answered 500"):
            await upstream.get_json(up, "/broken", 2.0)
        with pytest.raises(UpstreamError, match="/not-json answered invalid JSON"):
            await upstream.get_json(up, "/not-json", 2.0)
        with pytest.raises(UpstreamTimeout, match=r"/stall did not answer in 0\.2 s"):
            await upstream.get_json(up, "/stall", 0.2)
        with pytest.raises(UpstreamConnectError, match="Connection refused"):
            await upstream.get_json(backend(refused_url()), "/api/tags", 2.0)
