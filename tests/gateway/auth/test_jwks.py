"""A region's keys from the router's JWKS: parsed strictly, refreshed, rate-limited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.auth.jwks import JwksError, JwksRefresher, JwksVerifier, parse_jwks
from gateway.auth.tokens import key_id, mint, public_jwk
from gateway.errors import Unauthorized

pytestmark = pytest.mark.anyio


def test_parse_keeps_ed25519_signing_keys_only() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    document = {
        "keys": [
            public_jwk(key),
            {"kty": "RSA", "n": "x", "e": "AQAB"},
            {**public_jwk(key), "use": "enc"},
        ]
    }
    assert [key_id(k) for k in parse_jwks(document)] == [key_id(key)]
    for bad in ({}, {"keys": []}, {"keys": [{"kty": "OKP", "crv": "Ed25519"}]}, []):
        with pytest.raises(JwksError):
            parse_jwks(bad)
    with pytest.raises(JwksError, match="bad 'x'"):
        parse_jwks({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]})


class Router:
    """A stand-in for the router's JWKS endpoint, counting fetches."""

    def __init__(self) -> None:
        self.keys = [Ed25519PrivateKey.generate()]
        self.fetches = 0
        self.fail = False

    async def jwks(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.fail:
            return web.Response(status=500)
        return web.json_response({"keys": [public_jwk(k.public_key()) for k in self.keys]})


@pytest.fixture
async def router() -> AsyncIterator[tuple[Router, str]]:
    state = Router()
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", state.jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield state, f"http://127.0.0.1:{port}/.well-known/jwks.json"
    finally:
        await runner.cleanup()


async def wait_until(predicate: Callable[[], bool]) -> None:
    for _ in range(300):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 3 s")


async def test_an_unknown_kid_triggers_one_rate_limited_fetch(router: tuple[Router, str]) -> None:
    state, url = router
    verifier = JwksVerifier([])
    async with JwksRefresher(url, verifier, interval=60.0, min_interval=0.3) as refresher:
        old = mint(state.keys[0], "alice")[0]
        assert verifier.verify(old).subject == "alice" and state.fetches == 1
        state.keys.append(Ed25519PrivateKey.generate())  # the router rotated
        new = mint(state.keys[1], "alice")[0]
        for _ in range(20):  # a burst of tokens with the new kid: refused, one fetch
            with pytest.raises(Unauthorized, match="unknown key"):
                verifier.verify(new)
        await wait_until(lambda: state.fetches == 2)
        assert verifier.verify(new).subject == "alice"
        assert verifier.verify(old).subject == "alice"  # the old key stays while published
        await asyncio.sleep(0.4)
        assert state.fetches == 2 and len(refresher.fetched_kids) == 2


async def test_a_failed_fetch_keeps_the_keys_and_static_keys_stay(
    router: tuple[Router, str],
) -> None:
    state, url = router
    static = Ed25519PrivateKey.generate()
    verifier = JwksVerifier([static.public_key()])
    async with JwksRefresher(
        url, verifier, static_keys=[static.public_key()], interval=0.05, min_interval=0.0
    ) as refresher:
        token = mint(state.keys[0], "alice")[0]
        assert verifier.verify(token).subject == "alice"
        state.fail = True
        await wait_until(lambda: refresher.failures >= 2)
        assert verifier.verify(token).subject == "alice"
        assert verifier.verify(mint(static, "bob")[0]).subject == "bob"


async def test_a_router_down_at_start_is_retried(router: tuple[Router, str]) -> None:
    state, url = router
    state.fail = True
    verifier = JwksVerifier([])
    async with JwksRefresher(url, verifier, retry=0.05, min_interval=0.0):
        token = mint(state.keys[0], "alice")[0]
        with pytest.raises(Unauthorized):
            verifier.verify(token)
        state.fail = False
        await wait_until(lambda: bool(verifier.key_ids))
        assert verifier.verify(token).subject == "alice"
