"""Redis going away degrades, never breaks, and recovery needs nobody."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.store.base import token_id_for
from gateway.store.resilient import ResilientStore
from gateway.store.revocations import RevocationCache
from tests.gateway.store.redis_server import RedisServer, resilient

pytestmark = pytest.mark.anyio


async def wait_until(condition: object, seconds: float) -> float:
    start = time.monotonic()
    while not (condition() if callable(condition) else condition):
        assert time.monotonic() - start < seconds, "condition not met in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def serve_everything_locally(store: ResilientStore) -> None:
    """Every operation answers, from local state, without waiting for Redis."""
    assert (await store.rate_limit("alice", 2)).allowed
    assert (await store.rate_limit("alice", 2)).allowed
    assert not (await store.rate_limit("alice", 2)).allowed
    assert await store.acquire_stream("alice", 1)
    assert not await store.acquire_stream("alice", 1)
    await store.release_stream("alice")
    await store.publish_heartbeat("us-west", {"ok": True}, ttl=5)
    assert await store.heartbeats() == {"us-west": {"ok": True}}
    await store.cache_set("k", b"v", ttl=5)
    assert await store.cache_get("k") == b"v"
    await store.revoke_token("one.token", time.time() + 60)
    assert "one.token" in (await store.revocations()).tokens


async def test_redis_outage_degrades_and_recovers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    flips: list[bool] = []
    async with (
        resilient(redis_server.url, tmp_path / "ghostgate.db", on_degraded=flips.append) as store,
        resilient(redis_server.url) as other,
    ):
        mine, my_secret = await store.create_key("alice")  # in Redis and the SQLite copy
        _, their_secret = await other.create_key("bob")  # in Redis only
        assert await store.find_key(their_secret) is not None  # now seen recently
        assert await store.acquire_stream("carol", 5)  # a lease held on Redis
        async with (
            RevocationCache(store, interval=0.1) as cache,
            store.subscribe_cancels("me") as messages,
        ):
            redis_server.stop()

            started = time.monotonic()
            await serve_everything_locally(store)
            assert store.degraded and flips == [True]
            assert time.monotonic() - started < 1.0  # one failed call, then no waiting
            found = await store.find_key(my_secret)
            assert found is not None and found.key_id == mine.key_id
            assert await store.find_key(their_secret) is not None
            assert await store.find_key("gg_unknown") is None
            await store.release_stream("carol")  # its lease will lapse in Redis

            await store.publish_cancel("me", {"request": "local"})
            assert await asyncio.wait_for(anext(messages), 2) == {"request": "local"}

            kept, kept_secret = await store.create_key("dave")
            gone, gone_secret = await store.create_key("erin")
            assert await store.revoke_key(gone.key_id) is True
            assert await store.find_key(gone_secret) is None
            await wait_until(lambda: cache.is_revoked(token_id_for(gone.key_id), "erin"), 1)
            assert store.status()["pending_writes"] == 4  # with the revoked token

            redis_server.start()  # same port, empty: the outage lost Redis' data
            assert await wait_until(lambda: not store.degraded, 5) < 3
            assert flips == [True, False] and store.status()["pending_writes"] == 0

            # The writes made while degraded were replayed into Redis in order.
            assert await other.find_key(kept_secret) is not None
            assert await other.find_key(gone_secret) is None
            assert gone.key_id in (await other.revocations()).keys
            assert (await store.rate_limit("alice", 2)).allowed  # scripts reloaded by themselves
            assert not store.degraded and not other.degraded

            # The cancel subscription came back by itself.
            async def delivered() -> dict[str, object]:
                while True:
                    await other.publish_cancel("me", {"request": "remote"})
                    try:
                        return await asyncio.wait_for(anext(messages), 0.2)
                    except TimeoutError:
                        continue

            assert await asyncio.wait_for(delivered(), 5) == {"request": "remote"}
        assert kept.user == "dave"


async def test_starts_degraded_when_redis_is_down(tmp_path: Path) -> None:
    async with resilient("redis://127.0.0.1:1/0", tmp_path / "ghostgate.db") as store:
        assert store.degraded
        record, secret = await store.create_key("alice")
        found = await store.find_key(secret)
        assert found is not None and found.key_id == record.key_id
        assert [k.key_id for k in await store.list_keys()] == [record.key_id]
        async with store.subscribe_cancels("me") as messages:
            await store.publish_cancel("me", {"x": 1})
            assert await asyncio.wait_for(anext(messages), 2) == {"x": 1}


async def test_slow_redis_times_out_quickly(redis_server: RedisServer) -> None:
    async with resilient(redis_server.url) as store, Redis.from_url(redis_server.url) as raw:
        await store.cache_set("k", b"shared", ttl=60)
        sleeper = asyncio.create_task(raw.execute_command("DEBUG", "SLEEP", "1"))  # type: ignore[no-untyped-call]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        assert await store.cache_get("k") is None  # answered from the empty local cache
        assert time.monotonic() - started < 0.6 and store.degraded
        await sleeper
        await wait_until(lambda: not store.degraded, 3)
        assert await store.cache_get("k") == b"shared"


async def test_redis_error_reply_answers_locally_without_degrading(
    redis_server: RedisServer,
) -> None:
    async with resilient(redis_server.url) as store, Redis.from_url(redis_server.url) as raw:
        await raw.hset("ghostgate:cache:k", "not", "a string")
        assert await store.cache_get("k") is None
        assert not store.degraded and store.status()["fallbacks"] == 1
