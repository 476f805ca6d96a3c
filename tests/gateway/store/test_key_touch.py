"""A key lookup writes `last_used_at` only when asked to (the router throttles it)."""

from __future__ import annotations

import pytest

from gateway.store.embedded import EmbeddedStore
from gateway.store.resilient import ResilientStore

pytestmark = pytest.mark.anyio


async def last_used(store: EmbeddedStore | ResilientStore, key_id: str) -> float | None:
    return next(k.last_used_at for k in await store.list_keys() if k.key_id == key_id)


async def test_a_lookup_without_touch_reads_but_writes_nothing(
    store: EmbeddedStore | ResilientStore,
) -> None:
    record, secret = await store.create_key("alice")
    found = await store.find_key(secret, touch=False)
    assert found is not None and found.key_id == record.key_id
    assert await last_used(store, record.key_id) is None
    touched = await store.find_key(secret)
    assert touched is not None and touched.last_used_at is not None
    assert await last_used(store, record.key_id) == touched.last_used_at
    again = await store.find_key(secret, touch=False)
    assert again is not None and again.last_used_at == touched.last_used_at
    await store.revoke_key(record.key_id)
    assert await store.find_key(secret, touch=False) is None  # revoked: refused, untouched
