"""Rate limits and concurrent streams: exact across instances sharing one Redis."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import RateLimited
from gateway.store.base import RateDecision
from gateway.store.embedded import EmbeddedStore
from gateway.store.memory import SlidingWindowLimiter, StreamCounter
from gateway.store.redis_store import RedisStore
from gateway.store.resilient import ResilientStore
from tests.gateway.store.redis_server import RedisServer, resilient

pytestmark = pytest.mark.anyio


async def test_rate_limit_is_atomic_across_instances(redis_server: RedisServer) -> None:
    async with resilient(redis_server.url) as a, resilient(redis_server.url) as b:
        hits = [store.rate_limit("alice", 60) for store in (a, b) for _ in range(50)]
        decisions = await asyncio.gather(*hits)
        assert not a.degraded and not b.degraded
        assert sum(d.allowed for d in decisions) == 60
        assert sorted(d.remaining for d in decisions if d.allowed) == list(range(60))
        denied = [d for d in decisions if not d.allowed]
        assert all(0 < d.retry_after <= 60 and d.remaining == 0 for d in denied)
        assert (await a.rate_limit("bob", 60)).allowed  # per user


async def test_rate_window_slides(store: EmbeddedStore | ResilientStore) -> None:
    assert [(await store.rate_limit("u", 2, window=0.3)).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    await asyncio.sleep(0.35)
    assert (await store.rate_limit("u", 2, window=0.3)).allowed


def test_sliding_window_limiter() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(lambda: now[0])
    assert limiter.hit("u", 2, 60).remaining == 1
    now[0] = 30.0
    assert limiter.hit("u", 2, 60) == RateDecision(True, 0.0, 0)
    now[0] = 40.0
    assert limiter.hit("u", 2, 60) == RateDecision(False, 20.0, 0)
    now[0] = 60.0  # the first hit has left the window; the second has not
    assert limiter.hit("u", 2, 60).allowed
    assert not limiter.hit("u", 2, 60).allowed


def test_denied_decision_raises_rate_limited() -> None:
    RateDecision(True, 0.0, 3).check()
    with pytest.raises(RateLimited) as info:
        RateDecision(False, 12.5, 0).check()
    assert info.value.status == 429 and info.value.retry_after == 12.5


async def test_streams_limited_across_instances(redis_server: RedisServer) -> None:
    async with resilient(redis_server.url) as a, resilient(redis_server.url) as b:
        stores = [a, b] * 5
        taken = await asyncio.gather(*(s.acquire_stream("alice", 3) for s in stores))
        assert sum(taken) == 3
        holder = next(s for s, ok in zip(stores, taken, strict=True) if ok)
        await holder.release_stream("alice")
        assert await b.acquire_stream("alice", 3)
        assert not await a.acquire_stream("alice", 3)
        assert await a.acquire_stream("bob", 3)


async def test_streams_embedded(store: EmbeddedStore | ResilientStore) -> None:
    assert await store.acquire_stream("u", 1)
    assert not await store.acquire_stream("u", 1)
    await store.release_stream("u")
    await store.release_stream("u")  # an extra release never goes below zero
    assert await store.acquire_stream("u", 1)


async def test_stream_lease_of_a_dead_instance_expires(redis_server: RedisServer) -> None:
    async with RedisStore(redis_server.url, lease_ttl=0.3) as a, RedisStore(redis_server.url) as b:
        assert await a.acquire_stream("alice", 1)
        await asyncio.sleep(0.5)  # renewed every ttl/3 while held
        assert not await b.acquire_stream("alice", 1)
        a.forget_stream("alice")  # as if `a` crashed: nobody renews, nobody releases
        await asyncio.sleep(0.4)
        assert await b.acquire_stream("alice", 1)


async def test_clean_shutdown_returns_leases(redis_server: RedisServer) -> None:
    async with RedisStore(redis_server.url) as b:
        async with RedisStore(redis_server.url) as a:
            assert await a.acquire_stream("alice", 1)
            assert not await b.acquire_stream("alice", 1)
        assert await b.acquire_stream("alice", 1)


def test_stream_counter_repr() -> None:
    counter = StreamCounter()
    counter.acquire("u", 2)
    assert counter.count("u") == 1 and "'u': 1" in repr(counter)
