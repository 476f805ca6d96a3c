"""API keys: shown once, stored as a digest, found, listed, revoked, kept across restarts."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from gateway.store import open_store
from gateway.store.base import key_digest, key_id_of, token_id_for
from gateway.store.embedded import EmbeddedStore
from gateway.store.resilient import ResilientStore
from tests.gateway.store.redis_server import RedisServer, resilient

pytestmark = pytest.mark.anyio

AnyStore = EmbeddedStore | ResilientStore


async def test_create_find_list_revoke(store: AnyStore) -> None:
    record, secret = await store.create_key("alice")
    assert secret.startswith("gg_")
    assert len(base64.urlsafe_b64decode(secret[3:] + "=")) == 32
    assert len(record.key_id) == 12 and record.key_id not in secret
    assert record.key_id not in key_digest(secret)

    found = await store.find_key(secret)
    assert found is not None and found.key_id == record.key_id and found.user == "alice"
    assert found.last_used_at is not None
    assert await store.find_key(secret + "x") is None
    assert await store.find_key("gg_nonsense") is None

    other, _ = await store.create_key("bob")
    listed = await store.list_keys()
    assert [(k.key_id, k.user) for k in listed] == [(record.key_id, "alice"), (other.key_id, "bob")]

    assert await store.revoke_key(record.key_id) is True
    assert await store.revoke_key(record.key_id) is False  # already revoked
    assert await store.revoke_key("000000000000") is False  # unknown
    assert await store.find_key(secret) is None
    revoked = {k.key_id: k.revoked_at for k in await store.list_keys()}
    assert revoked[record.key_id] is not None and revoked[other.key_id] is None
    assert (await store.revocations()).keys == {record.key_id}


async def test_key_needs_a_user(store: AnyStore) -> None:
    with pytest.raises(ValueError):
        await store.create_key("")


async def test_key_survives_reopening_and_secret_never_written(tmp_path: Path) -> None:
    async with open_store(tmp_path, None) as first:
        record, secret = await first.create_key("alice")
        await first.find_key(secret)
        files = list(tmp_path.glob("ghostgate.db*"))
        assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {0o600}
    db = tmp_path / "ghostgate.db"
    for path in tmp_path.glob("ghostgate.db*"):  # the WAL and shm files too
        data = path.read_bytes()
        assert secret.encode() not in data and secret[3:].encode() not in data
    assert key_digest(secret).encode() in db.read_bytes()

    async with open_store(tmp_path, None) as second:
        found = await second.find_key(secret)
        assert found is not None and found.key_id == record.key_id


async def test_redis_keys_shared_between_instances(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with resilient(redis_server.url) as a, resilient(redis_server.url) as b:
        record, secret = await a.create_key("alice")
        found = await b.find_key(secret)
        assert found is not None and found.key_id == record.key_id
        assert [k.key_id for k in await b.list_keys()] == [record.key_id]
        assert await b.revoke_key(record.key_id) is True
        assert await a.find_key(secret) is None


async def test_open_store_with_redis_writes_the_sqlite_copy(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with open_store(tmp_path, redis_server.url) as store:
        assert not store.degraded
        record, secret = await store.create_key("alice")
    async with open_store(tmp_path, None) as embedded:
        found = await embedded.find_key(secret)
        assert found is not None and found.key_id == record.key_id


def test_token_id_carries_the_key_id() -> None:
    jti = token_id_for("0123456789ab")
    assert key_id_of(jti) == "0123456789ab"
    assert key_id_of("plainjti") is None
