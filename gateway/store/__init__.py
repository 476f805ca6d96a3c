"""Shared state: API keys, revocations, rate limits, heartbeats, cache, cancel messages.

    async with open_store(state_dir, redis_url) as store:
        ...

Embedded (no Redis): process memory plus `<state-dir>/ghostgate.db` (SQLite) for
keys and revocations. With Redis: a `ResilientStore` that serves from Redis and
falls back to the embedded store, operation by operation, while Redis is away
(a refused write is retried, then queued: `StoreSettings`, outage.py).
The layout, the exception tree and the algorithms are described in `base.py`.
"""

from __future__ import annotations

from pathlib import Path

from gateway.settings import StoreSettings
from gateway.store.base import (
    KEY_PREFIX,
    KeyRecord,
    Payload,
    RateDecision,
    Revocations,
    Store,
    StoreCorrupted,
    StoreError,
    StoreUnavailable,
    key_digest,
    key_id_of,
    new_key,
    token_id_for,
)
from gateway.store.revocations import RevocationCache, revocations_file

__all__ = [
    "KEY_PREFIX",
    "KeyRecord",
    "Payload",
    "RateDecision",
    "RevocationCache",
    "Revocations",
    "Store",
    "StoreCorrupted",
    "StoreError",
    "StoreUnavailable",
    "key_digest",
    "key_id_of",
    "new_key",
    "open_store",
    "revocations_file",
    "token_id_for",
]


def open_store(
    state_dir: Path | None, redis_url: str | None = None, settings: StoreSettings | None = None
) -> Store:
    """The store for this process, not yet opened: use it as `async with store:`.

    Without a state dir the embedded store keeps keys in a private in-memory
    SQLite database (a region whose keys live in the router's). `settings`: how
    a Redis outage is ridden out (retries, the replay queue's bound)."""
    from gateway.store.embedded import EmbeddedStore
    from gateway.store.sqlite_keys import MEMORY

    local = EmbeddedStore.at(state_dir / "ghostgate.db") if state_dir else EmbeddedStore(MEMORY)
    if not redis_url:
        return local
    from gateway.store.redis_store import RedisStore
    from gateway.store.resilient import ResilientStore

    outage = settings or StoreSettings()
    return ResilientStore(
        RedisStore(redis_url),
        local,
        write_retries=outage.write_retries,
        write_backoff=outage.write_backoff,
        replay_limit=outage.replay_limit,
    )
