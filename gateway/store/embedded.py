"""The embedded store: process memory plus the SQLite key file; no server needed.

It is the default, and the local half of `ResilientStore`. Keys and revocations
live in SQLite, so every process on the machine sharing the state dir sees them
(a region's `RevocationCache` re-reads them every second); rate limits, streams,
heartbeats, the cache and cancel messages are per process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Self

from gateway.store.base import KeyRecord, Payload, RateDecision, Revocations, key_digest, new_key
from gateway.store.lru import DEFAULT_MAX_BYTES, ByteLRU
from gateway.store.memory import CancelBus, HeartbeatBoard, SlidingWindowLimiter, StreamCounter
from gateway.store.sqlite_keys import MEMORY, SqliteKeys


class EmbeddedStore:
    """A `Store` in this process, with keys persisted in SQLite at `path`."""

    def __init__(
        self,
        path: Path | str = MEMORY,
        *,
        cache_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.clock = clock
        self._sqlite: SqliteKeys | None = None
        self.limiter = SlidingWindowLimiter(monotonic)
        self.streams = StreamCounter()
        self.board = HeartbeatBoard(monotonic)
        self.cache = ByteLRU(cache_bytes, monotonic)
        self.bus = CancelBus()

    @classmethod
    def at(cls, path: Path) -> EmbeddedStore:
        """The embedded store of a state dir's `ghostgate.db`."""
        return cls(path)

    @property
    def degraded(self) -> bool:
        return False

    def status(self) -> dict[str, object]:
        return {"backend": "embedded", "degraded": False, "cache_bytes": self.cache.size}

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.path)!r}, {self.cache!r})"

    async def __aenter__(self) -> Self:
        self._sqlite = await asyncio.to_thread(SqliteKeys.open, self.path)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._sqlite is not None:
            sqlite, self._sqlite = self._sqlite, None
            await asyncio.to_thread(sqlite.close)

    @property
    def _keys(self) -> SqliteKeys:
        if self._sqlite is None:
            raise RuntimeError("the store is not open: use `async with store:`")
        return self._sqlite

    # API keys and revocations: SQLite, off the event loop (see sqlite_keys.py).

    async def create_key(self, user: str) -> tuple[KeyRecord, str]:
        """A new key for `user`: its record and the secret, which is never seen again."""
        record, secret, digest = new_key(user, self.clock())
        await self.insert_key(record, digest)
        return record, secret

    async def insert_key(self, record: KeyRecord, digest: str) -> None:
        await asyncio.to_thread(self._keys.insert, record, digest)

    async def find_key(self, secret: str, *, touch: bool = True) -> KeyRecord | None:
        """The active key whose secret this is, or None (unknown or revoked)."""
        return await self.find_digest(key_digest(secret), touch=touch)

    async def find_digest(self, digest: str, *, touch: bool = True) -> KeyRecord | None:
        now = self.clock() if touch else None
        return await asyncio.to_thread(self._keys.use, digest, now)

    async def list_keys(self) -> list[KeyRecord]:
        return await asyncio.to_thread(self._keys.list)

    async def revoke_key(self, key_id: str) -> bool:
        """True when this call revoked the key; False when unknown or revoked before."""
        return await asyncio.to_thread(self._keys.revoke, key_id, self.clock())

    async def revoke_token(self, token_id: str, expires_at: float) -> None:
        """Revoke one token (by jti) until `expires_at` (unix seconds)."""
        await asyncio.to_thread(self._keys.revoke_token, token_id, expires_at, self.clock())

    async def revocations(self) -> Revocations:
        return await asyncio.to_thread(self._keys.revocations, self.clock())

    def assume_revoked(self, revocations: Revocations) -> None:
        """Nothing to do: the SQLite file already is this store's record on disk."""

    async def require_durable(self) -> None:
        """Nothing to wait for: every write is committed to SQLite before it returns."""

    # Everything else: process memory.

    async def rate_limit(self, user: str, limit: int, window: float = 60.0) -> RateDecision:
        """Count one request of `user` against `limit` per `window` seconds."""
        return self.limiter.hit(user, limit, window)

    async def acquire_stream(self, user: str, limit: int, n: int = 1) -> bool:
        """Take `n` of `user`'s `limit` concurrent streams; False (none taken) when
        fewer are free."""
        return self.streams.acquire(user, limit, n)

    async def release_stream(self, user: str, n: int = 1) -> None:
        self.streams.release(user, n)

    async def publish_heartbeat(self, region: str, payload: Payload, ttl: float) -> None:
        self.board.publish(region, payload, ttl)

    async def heartbeats(self) -> dict[str, Payload]:
        return self.board.snapshot()

    async def cache_get(self, key: str) -> bytes | None:
        return self.cache.get(key)

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        self.cache.set(key, value, ttl)

    async def publish_cancel(self, instance: str, message: Payload) -> None:
        self.bus.publish(instance, message)

    @asynccontextmanager
    async def subscribe_cancels(self, instance: str) -> AsyncIterator[AsyncIterator[Payload]]:
        """Cancel messages for `instance`, from subscription until the block exits."""
        async with self.bus.subscribe(instance) as subscription:
            yield subscription
