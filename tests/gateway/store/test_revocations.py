"""A revoked key's tokens fail everywhere within 5 s; single tokens can be revoked too."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.auth import tokens
from gateway.auth.tokens import TokenVerifier, mint
from gateway.errors import Unauthorized
from gateway.store.base import Revocations, StoreUnavailable, token_id_for
from gateway.store.embedded import EmbeddedStore
from gateway.store.revocations import RevocationCache
from tests.gateway.store.redis_server import RedisServer, resilient

pytestmark = pytest.mark.anyio

INTERVAL = 0.2


async def seen_within(cache: RevocationCache, token_id: str, limit: float) -> float:
    """Seconds until `cache` reports `token_id` revoked; fails past `limit`."""
    start = time.monotonic()
    while not cache.is_revoked(token_id, "alice"):
        assert time.monotonic() - start < limit, "revocation not seen in time"
        await anyio.sleep(0.01)
    return time.monotonic() - start


async def test_revocation_reaches_another_redis_instance_quickly(
    redis_server: RedisServer,
) -> None:
    async with resilient(redis_server.url) as router, resilient(redis_server.url) as region:
        record, _ = await router.create_key("alice")
        jti = token_id_for(record.key_id)
        async with RevocationCache(region, interval=INTERVAL) as cache:
            assert not cache.is_revoked(jti, "alice")
            await router.revoke_key(record.key_id)
            elapsed = await seen_within(cache, jti, 5.0)
    assert elapsed < 5.0
    assert elapsed < INTERVAL + 0.5  # one refresh period plus a read


async def test_revocation_reaches_another_process_on_the_same_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "ghostgate.db"
    async with EmbeddedStore(db) as cli, EmbeddedStore(db) as region:
        record, _ = await cli.create_key("alice")
        jti = token_id_for(record.key_id)
        async with RevocationCache(region, interval=INTERVAL) as cache:
            await cli.revoke_key(record.key_id)
            assert await seen_within(cache, jti, 5.0) < INTERVAL + 0.5


async def test_single_token_revocation(store: EmbeddedStore) -> None:
    jti, sibling = token_id_for("0123456789ab"), token_id_for("0123456789ab")
    await store.revoke_token(jti, expires_at=time.time() + 600)
    await store.revoke_token("stale", expires_at=time.time() - 1)
    async with RevocationCache(store, interval=INTERVAL) as cache:
        assert cache.is_revoked(jti, "alice")
        assert not cache.is_revoked(sibling, "alice")
        assert not cache.is_revoked("stale", "alice")


def mint_from_key(key: Ed25519PrivateKey, subject: str, api_key_id: str) -> str:
    """What the router must do: a token whose jti names the API key it was minted from."""
    _, claims = mint(key, subject)
    claims["jti"] = token_id_for(api_key_id)
    kid = tokens.key_id(key.public_key())
    return jwt.encode(dict(claims), key, algorithm="EdDSA", headers={"kid": kid})


async def test_verifier_rejects_tokens_of_a_revoked_key(store: EmbeddedStore) -> None:
    key = Ed25519PrivateKey.generate()
    record, _ = await store.create_key("alice")
    token = mint_from_key(key, "alice", record.key_id)
    async with RevocationCache(store, interval=INTERVAL) as cache:
        verifier = TokenVerifier([key.public_key()], revocations=cache)
        assert verifier.verify(token).subject == "alice"
        await store.revoke_key(record.key_id)
        await cache.refresh()
        with pytest.raises(Unauthorized) as info:
            verifier.verify(token)  # cached as verified, still refused
        assert info.value.reason == "revoked"


class FailingSource:
    def __init__(self) -> None:
        self.fail = False

    async def revocations(self) -> Revocations:
        if self.fail:
            raise StoreUnavailable("away")
        return Revocations(keys=frozenset(["k"]))


async def test_cache_keeps_last_snapshot_when_a_read_fails() -> None:
    source = FailingSource()
    async with RevocationCache(source, interval=INTERVAL) as cache:
        assert cache.is_revoked("k.x", "u") and cache.age() is not None
        source.fail = True
        await cache.refresh()
        assert cache.is_revoked("k.x", "u")
