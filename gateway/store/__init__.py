"""Shared state: API keys, revocations, rate limits, heartbeats, cache, cancel messages.

    async with open_store(state_dir, redis_url) as store:
        ...

Embedded (no Redis): process memory plus `<state-dir>/ghostgate.db` (SQLite) for
keys and revocations. With Redis: a `ResilientStore` that serves from Redis and
falls back to the embedded store, operation by operation, while Redis is away.
The layout, the exception tree and the algorithms are described in `base.py`.
"""

from __future__ import annotations

from pathlib import Path

from gateway.store.base import Store


def open_store(state_dir: Path, redis_url: str | None = None) -> Store:
    """The store for this process, not yet opened: use it as `async with store:`."""
    from gateway.store.embedded import EmbeddedStore

    local = EmbeddedStore.at(state_dir / "ghostgate.db")
    if not redis_url:
        return local
    from gateway.store.redis_store import RedisStore
    from gateway.store.resilient import ResilientStore

    return ResilientStore(RedisStore(redis_url), local)
