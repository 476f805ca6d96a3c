"""A request with n choices takes n of its user's streams, all or none, and gives
back exactly n: in the embedded store, on Redis (one atomic script) and across
a Redis outage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.store.embedded import EmbeddedStore
from gateway.store.memory import StreamCounter
from gateway.store.resilient import ResilientStore
from tests.gateway.store.redis_server import RedisServer, resilient

pytestmark = pytest.mark.anyio


def test_stream_counter_takes_n_or_none() -> None:
    counter = StreamCounter()
    assert not counter.acquire("u", 3, 4)  # more than the limit: refused whole
    assert counter.count("u") == 0
    assert counter.acquire("u", 3, 2)
    assert not counter.acquire("u", 3, 2)  # one free, two wanted
    assert counter.count("u") == 2
    assert counter.acquire("u", 3)
    counter.release("u", 2)
    counter.release("u")
    assert counter.count("u") == 0
    counter.release("u", 5)  # never below zero
    assert counter.count("u") == 0


async def test_n_streams_all_or_none(store: EmbeddedStore | ResilientStore) -> None:
    assert not await store.acquire_stream("u", 3, 4)
    assert await store.acquire_stream("u", 3, 3)  # at the limit
    assert not await store.acquire_stream("u", 3)
    await store.release_stream("u", 3)
    assert await store.acquire_stream("u", 3, 2)
    assert await store.acquire_stream("u", 3)
    assert not await store.acquire_stream("u", 3)
    await store.release_stream("u", 2)
    await store.release_stream("u")
    assert await store.acquire_stream("u", 3, 3)  # everything came back
    await store.release_stream("u", 3)


async def test_n_streams_are_atomic_across_instances(redis_server: RedisServer) -> None:
    async with resilient(redis_server.url) as a, resilient(redis_server.url) as b:
        stores = [a, b] * 5
        taken = await asyncio.gather(*(s.acquire_stream("alice", 5, 2) for s in stores))
        assert sum(taken) == 2  # 2 + 2 of 5; a third pair never got a partial 1
        holders = [s for s, ok in zip(stores, taken, strict=True) if ok]
        assert await a.acquire_stream("alice", 5)  # the fifth
        assert not await b.acquire_stream("alice", 5)
        for holder in holders:
            await holder.release_stream("alice", 2)
        await a.release_stream("alice")
        assert await b.acquire_stream("alice", 5, 5)
        await b.release_stream("alice", 5)


async def test_n_streams_come_back_where_they_were_taken(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with resilient(redis_server.url, tmp_path / "ghostgate.db") as store:
        assert await store.acquire_stream("carol", 4, 2)  # two leases on Redis
        redis_server.stop()
        assert await store.acquire_stream("carol", 4, 3)  # degraded: counted locally
        assert store.degraded
        assert store.local.streams.count("carol") == 3
        await store.release_stream("carol", 2)  # the last taken: two local ones
        await store.release_stream("carol", 3)  # one local, two Redis leases forgotten
        assert store.local.streams.count("carol") == 0
        assert not store._streams and not store.remote.leases._held
