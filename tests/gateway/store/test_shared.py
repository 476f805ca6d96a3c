"""Heartbeats with TTL, the completion cache, and cancel messages between instances."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.embedded import EmbeddedStore
from gateway.store.lru import ENTRY_OVERHEAD, ByteLRU
from gateway.store.resilient import ResilientStore
from tests.gateway.store.redis_server import RedisServer, resilient

pytestmark = pytest.mark.anyio

AnyStore = EmbeddedStore | ResilientStore


async def test_heartbeats_expire(store: AnyStore) -> None:
    await store.publish_heartbeat("us-west", {"inflight": 3, "ready": True}, ttl=0.2)
    await store.publish_heartbeat("eu-west", {"inflight": 0}, ttl=5)
    assert await store.heartbeats() == {
        "us-west": {"inflight": 3, "ready": True},
        "eu-west": {"inflight": 0},
    }
    await asyncio.sleep(0.3)
    assert await store.heartbeats() == {"eu-west": {"inflight": 0}}


async def test_heartbeats_shared(redis_server: RedisServer) -> None:
    async with resilient(redis_server.url) as region, resilient(redis_server.url) as router:
        await region.publish_heartbeat("ap-east", {"load": 0.5}, ttl=5)
        assert await router.heartbeats() == {"ap-east": {"load": 0.5}}


async def test_cache_get_set_ttl(store: AnyStore) -> None:
    assert await store.cache_get("k") is None
    await store.cache_set("k", b"completion", ttl=0.2)
    await store.cache_set("long", b"kept", ttl=5)
    assert await store.cache_get("k") == b"completion"
    await asyncio.sleep(0.3)
    assert await store.cache_get("k") is None
    assert await store.cache_get("long") == b"kept"


def test_lru_is_bounded_in_bytes_and_evicts_least_recent() -> None:
    now = [0.0]
    cost = 1 + 100 + ENTRY_OVERHEAD  # one-letter key, 100-byte value
    lru = ByteLRU(max_bytes=3 * cost, clock=lambda: now[0])
    for key in "abc":
        lru.set(key, bytes(100), ttl=60)
    assert lru.get("a") is not None  # now b is the least recently used
    lru.set("d", bytes(100), ttl=60)
    assert lru.get("b") is None and len(lru) == 3 and lru.size == 3 * cost
    lru.set("huge", bytes(4 * cost), ttl=60)  # larger than the bound: not kept
    assert lru.get("huge") is None and lru.size <= lru.max_bytes
    lru.set("a", bytes(10), ttl=60)  # replacing frees the old value's bytes
    assert lru.size == 3 * cost - 90
    now[0] = 61
    assert lru.get("a") is None and lru.size == 2 * cost


async def test_cancel_messages_between_instances(redis_server: RedisServer) -> None:
    async with resilient(redis_server.url) as sender, resilient(redis_server.url) as receiver:
        async with receiver.subscribe_cancels("us-west-1") as messages:
            await sender.publish_cancel("us-west-1", {"group": "g1", "request": "r1"})
            await sender.publish_cancel("us-east-1", {"group": "other"})
            await sender.publish_cancel("us-west-1", {"group": "g2"})
            first = await asyncio.wait_for(anext(messages), 2)
            second = await asyncio.wait_for(anext(messages), 2)
        assert [first, second] == [{"group": "g1", "request": "r1"}, {"group": "g2"}]


async def test_cancel_messages_in_process(store: AnyStore) -> None:
    async with store.subscribe_cancels("i1") as messages:
        await store.publish_cancel("i1", {"request": "r1"})
        assert await asyncio.wait_for(anext(messages), 2) == {"request": "r1"}
