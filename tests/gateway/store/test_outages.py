"""Redis outages lose nothing: revocations survive a restart without Redis, and
a write Redis refuses is retried, queued within a bound, or reported."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path

import pytest

from gateway.completion import Supersessions
from gateway.config import from_table
from gateway.metrics import Metrics
from gateway.settings import StoreSettings
from gateway.shared import SharedState
from gateway.store import revocations_file
from gateway.store.base import StoreUnavailable, token_id_for
from gateway.store.revocations import RevocationCache
from router.config import from_document
from tests.gateway.store.redis_server import RedisServer, resilient

pytestmark = pytest.mark.anyio

AWAY = "redis://127.0.0.1:1/0"  # nothing listens there


async def wait_until(condition: object, seconds: float) -> None:
    start = time.monotonic()
    while not (condition() if callable(condition) else condition):
        assert time.monotonic() - start < seconds, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_revocations_survive_a_restart_while_redis_is_away(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    db, saved = tmp_path / "ghostgate.db", revocations_file(tmp_path)
    assert saved == tmp_path / "revocations.json"
    async with resilient(redis_server.url, db) as store, resilient(redis_server.url) as other:
        record, secret = await store.create_key("alice")  # in Redis and this host's SQLite
        jti = token_id_for(record.key_id)
        async with RevocationCache(store, interval=0.05, path=saved) as cache:
            # Revoked on another host: this host's SQLite copy still says active.
            await other.revoke_key(record.key_id)
            await other.revoke_token("single.token", time.time() + 600)
            await wait_until(lambda: cache.is_revoked("single.token", "bob"), 2)
            await wait_until(lambda: cache.is_revoked(jti, "alice"), 2)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_bytes()) == {"keys": [record.key_id], "tokens": ["single.token"]}

    redis_server.stop()
    async with resilient(redis_server.url, db) as restarted:
        assert restarted.degraded
        async with RevocationCache(restarted, interval=0.05, path=saved) as cache:
            assert cache.is_revoked(jti, "alice")
            assert cache.is_revoked("single.token", "bob")
            assert not cache.is_revoked(token_id_for("0123456789ab"), "carol")
            assert await restarted.find_key(secret) is None  # the key itself is refused too
            await asyncio.sleep(0.15)  # refreshes from the degraded store keep it
            assert cache.is_revoked(jti, "alice")
    assert record.key_id in json.loads(saved.read_bytes())["keys"]


async def test_a_region_restarted_without_redis_refuses_what_was_revoked(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The wiring: a region's `SharedState` keeps the file in its state dir."""
    jti = token_id_for("0123456789ab")
    async with resilient(redis_server.url) as other:
        await other.revoke_token(jti, time.time() + 600)
    async with SharedState("r", tmp_path, redis_server.url, Supersessions()) as region:
        assert region.revocations.is_revoked(jti, "alice")
    redis_server.stop()
    async with SharedState("r", tmp_path, redis_server.url, Supersessions()) as region:
        assert region.degraded and region.revocations.is_revoked(jti, "alice")
    async with SharedState("r", None, redis_server.url, Supersessions()) as region:
        assert not region.revocations.is_revoked(jti, "alice")  # no state dir: no file


async def test_a_corrupt_file_is_ignored(tmp_path: Path) -> None:
    saved = tmp_path / "revocations.json"
    saved.write_text('{"keys": "not a list"}')
    async with resilient(AWAY, tmp_path / "ghostgate.db") as store:
        async with RevocationCache(store, path=saved) as cache:
            assert cache.snapshot.keys == frozenset()
    assert json.loads(saved.read_bytes()) == {"keys": [], "tokens": []}  # rewritten whole


async def test_a_write_during_a_short_outage_is_retried_and_lands(
    redis_server: RedisServer,
) -> None:
    metrics = Metrics("r")
    async with resilient(redis_server.url, write_backoff=0.2) as store:
        metrics.watch_store(store)
        await store.cache_set("warm", b"1", ttl=5)  # a pooled connection for the stop to break
        redis_server.stop()
        write = asyncio.create_task(store.create_key("bob"))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(redis_server.start)  # back within 0.2 + 0.4 + 0.8 s
        record, secret = await asyncio.wait_for(write, 5)
        # In Redis when the call returns, not queued for a replay.
        assert store.status()["pending_writes"] == 0
        assert store.status()["write_retries"] >= 1
        assert metrics.registry.get_sample_value("ghostgate_store_write_retries_total", {}) >= 1
        async with resilient(redis_server.url) as other:
            found = await other.find_key(secret)
            assert found is not None and found.key_id == record.key_id


async def test_the_replay_queue_is_bounded_and_counted(tmp_path: Path) -> None:
    metrics = Metrics("r")
    store = resilient(AWAY, tmp_path / "ghostgate.db", replay_limit=2)
    async with store:
        metrics.watch_store(store)
        for n in range(3):
            await store.revoke_token(f"t{n}.x", time.time() + 60)
        sample = metrics.registry.get_sample_value
        assert sample("ghostgate_store_replay_queue", {}) == 2
        assert sample("ghostgate_store_write_failures_total", {"reason": "queue_full"}) == 1
        assert sample("ghostgate_store_degraded", {}) == 1
        # Each still counts here: the local copy has all three.
        assert {"t0.x", "t1.x", "t2.x"} <= (await store.revocations()).tokens
    assert store.status()["write_failures"] == {"rejected": 0, "queue_full": 1, "abandoned": 2}


async def test_require_durable_retries_then_raises(tmp_path: Path) -> None:
    async with resilient(AWAY, tmp_path / "ghostgate.db", write_backoff=0.05) as store:
        await store.require_durable()  # nothing written: nothing to wait for
        await store.revoke_token("a.b", time.time() + 60)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.require_durable()
        assert time.monotonic() - started >= 0.05 + 0.1 + 0.2
        assert store.status()["write_retries"] == 3


async def test_require_durable_succeeds_once_redis_is_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.stop()
    async with resilient(redis_server.url, tmp_path / "ghostgate.db") as store:
        assert store.degraded
        await store.revoke_token("a.b", time.time() + 600)
        await asyncio.to_thread(redis_server.start)
        await store.require_durable()
        assert store.status()["pending_writes"] == 0
    async with resilient(redis_server.url) as other:
        assert "a.b" in (await other.revocations()).tokens


async def test_store_settings_are_read_from_toml() -> None:
    table = {"store": {"write_retries": 5, "write_backoff": 0.5, "replay_limit": 100}}
    wanted = StoreSettings(write_retries=5, write_backoff=0.5, replay_limit=100)
    assert from_table(table).store == wanted
    assert from_document({"router": table}).store == wanted
