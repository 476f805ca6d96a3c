"""Every key the Redis store writes expires, except the owned data that the audit
in gateway/store/redis_store.py names (API keys and key revocations)."""

from __future__ import annotations

import asyncio
import fnmatch
import time

import pytest
from redis.asyncio import Redis

from gateway.store.redis_store import RedisStore
from tests.gateway.store.redis_server import RedisServer, resilient

pytestmark = pytest.mark.anyio

OWNED = ("ghostgate:key:*", "ghostgate:keys", "ghostgate:revoked")
EXPIRING = (
    "ghostgate:revoked:tokens",
    "ghostgate:rate:*",
    "ghostgate:streams:*",
    "ghostgate:hb:*",
    "ghostgate:regions",
    "ghostgate:cache:*",
)


async def every_operation(store: RedisStore) -> None:
    await store.ping()
    record, secret = await store.create_key("alice")
    assert await store.find_key(secret) is not None
    await store.find_key(secret, touch=False)
    await store.list_keys()
    other, _ = await store.create_key("bob")
    assert await store.revoke_key(other.key_id)
    await store.revoke_token(f"{record.key_id}.nonce", time.time() + 600)
    await store.revocations()
    for _ in range(3):  # the last one denied
        await store.rate_limit("alice", 2)
    assert await store.acquire_stream("alice", 2)
    assert await store.acquire_stream("alice", 2)
    await store.release_stream("alice")
    await store.leases.renew()
    await store.publish_heartbeat("us-west", {"ready": True}, 3)
    await store.heartbeats()
    await store.cache_set("completion:abc", b"done", 600)
    await store.cache_set("group:alice-editor", b"us-west-1", 120)
    await store.cache_get("completion:abc")
    async with store.subscribe_cancels("us-west-1"):
        await store.publish_cancel("us-west-1", {"group": "g", "before": 1.0})


async def keys_and_ttls(url: str) -> dict[str, int]:
    client = Redis.from_url(url)
    try:
        names = [name.decode() async for name in client.scan_iter(match="*")]
        return {name: await client.ttl(name) for name in names}
    finally:
        await client.aclose()


async def test_every_key_written_has_a_ttl_or_a_documented_owner(
    redis_server: RedisServer,
) -> None:
    async with RedisStore(redis_server.url) as store:
        await every_operation(store)
        ttls = await keys_and_ttls(redis_server.url)
    owned = {k for k in ttls if any(fnmatch.fnmatchcase(k, p) for p in OWNED)}
    expiring = {k for k in ttls if any(fnmatch.fnmatchcase(k, p) for p in EXPIRING)}
    assert set(ttls) == owned | expiring, "a key the audit does not name"
    assert not owned & expiring
    assert {k: ttls[k] for k in expiring if ttls[k] <= 0} == {}, "written without a TTL"
    assert all(ttls[k] == -1 for k in owned)  # owned data is kept until its owner deletes it
    # Not vacuous: every pattern of the audit was written.
    for pattern in (*OWNED, *EXPIRING):
        assert any(fnmatch.fnmatchcase(k, pattern) for k in ttls), pattern


async def test_through_the_resilient_store_too(redis_server: RedisServer) -> None:
    async with resilient(redis_server.url) as store:
        await every_operation(store.remote)
        await store.revoke_token("k.n", time.time() + 60)
        await store.publish_heartbeat("eu-west", {"ready": True}, 3)
        ttls = await keys_and_ttls(redis_server.url)
    assert all(
        ttl > 0 for k, ttl in ttls.items() if not any(fnmatch.fnmatchcase(k, p) for p in OWNED)
    )


async def test_the_region_index_expires_with_its_last_heartbeat(
    redis_server: RedisServer,
) -> None:
    async with RedisStore(redis_server.url) as store:
        await store.publish_heartbeat("fast", {}, 0.2)
        await asyncio.sleep(0.4)
        assert await store.redis.exists("ghostgate:regions") == 0
        await store.publish_heartbeat("slow", {}, 30)
        await store.publish_heartbeat("fast", {}, 0.2)  # never shortens the index's TTL
        assert (await keys_and_ttls(redis_server.url))["ghostgate:regions"] > 20
        assert set(await store.heartbeats()) == {"slow", "fast"}


async def test_revoked_tokens_outlive_their_latest_token_and_no_longer(
    redis_server: RedisServer,
) -> None:
    async with RedisStore(redis_server.url) as store:
        now = time.time()
        await store.revoke_token("a.late", now + 1800)
        await store.revoke_token("a.early", now + 60)  # never shortens the set's TTL
        ttl = (await keys_and_ttls(redis_server.url))["ghostgate:revoked:tokens"]
        assert 1800 + 3600 - 5 <= ttl <= 1800 + 3600 + 5
        assert (await store.revocations()).tokens == {"a.late", "a.early"}
