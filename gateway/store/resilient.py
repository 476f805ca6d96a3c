"""Redis when it answers, local state when it does not: Redis going away degrades, never breaks.

Every operation tries Redis first (bounded by `RedisStore`'s short deadline).
The first `StoreUnavailable` marks the store `degraded` (see outage.py); from
then on operations go straight to the embedded store, without waiting for
timeouts, until a background ping finds Redis again. Writes made meanwhile (new
keys, revocations) go to the SQLite copy at once and are replayed into Redis,
in order, before `degraded` clears. A write Redis refuses is first retried
for a moment (outage.py); `require_durable` tells a caller that must know
whether its writes reached Redis.

While degraded: rate limits and stream counts are per process; heartbeats,
the cache and cancel messages reach only this process; an API key is found in
the keys seen recently or in the SQLite copy, minus every key revoked in the
last snapshot read from Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Self, TypeVar

from gateway.store.base import (
    KeyRecord,
    Payload,
    RateDecision,
    Revocations,
    StoreError,
    StoreUnavailable,
    key_digest,
    new_key,
)
from gateway.store.embedded import EmbeddedStore
from gateway.store.memory import Subscription
from gateway.store.outage import Outage, Write
from gateway.store.redis_store import RedisStore

T = TypeVar("T")
log = logging.getLogger("ghostgate.store")


class ResilientStore:
    """A `Store` on Redis that falls back to `local` per operation and recovers by itself.

    `on_degraded(True|False)` is called on every change, for a metric; `status()`
    is the snapshot for /readyz.
    """

    def __init__(
        self,
        remote: RedisStore,
        local: EmbeddedStore,
        *,
        retry_min: float = 0.1,
        retry_max: float = 1.0,
        recent_keys: int = 10_000,
        write_retries: int = 3,
        write_backoff: float = 0.2,
        replay_limit: int = 10_000,
        on_degraded: Callable[[bool], None] | None = None,
    ) -> None:
        self.remote = remote
        self.local = local
        self.outage = Outage(
            remote,
            retry_min=retry_min,
            retry_max=retry_max,
            write_retries=write_retries,
            write_backoff=write_backoff,
            replay_limit=replay_limit,
            on_change=on_degraded,
        )
        self._recent: OrderedDict[str, KeyRecord] = OrderedDict()
        self._recent_size = recent_keys
        self._revoked = Revocations()  # the last snapshot Redis gave
        self._streams: dict[str, list[bool]] = {}  # user -> held on Redis?, per stream

    @property
    def degraded(self) -> bool:
        return self.outage.degraded

    def status(self) -> dict[str, object]:
        return {
            "backend": "redis",
            "degraded": self.outage.degraded,
            "outages": self.outage.outages,
            "fallbacks": self.outage.fallbacks,
            "pending_writes": len(self.outage.pending),
            "replay_limit": self.outage.replay_limit,
            "write_retries": self.outage.retries,
            "write_failures": dict(self.outage.failures),
        }

    def __repr__(self) -> str:
        return f"ResilientStore({self.outage!r}, {self.remote!r}, {self.local!r})"

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.local)
            await stack.enter_async_context(self.remote)
            await stack.enter_async_context(self.outage)
            try:
                await self.remote.ping()
            except StoreUnavailable as exc:
                self.outage.failed(exc)  # start degraded: serving matters more than Redis
            stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.outage.__aexit__(*exc_info)
            await self.remote.__aexit__(*exc_info)
        finally:
            await self.local.__aexit__(*exc_info)

    async def _either(
        self, remote: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]
    ) -> T:
        if self.outage.degraded:
            self.outage.served_locally()
        else:
            try:
                return await remote()
            except StoreError as exc:
                self.outage.failed(exc)
        return await local()

    async def _write(self, write: Write) -> object | None:
        """Apply a shared write now (retried a moment), or queue it for when Redis
        is back (then None)."""
        return await self.outage.write(write)

    async def require_durable(self) -> None:
        """`StoreUnavailable` (or `StoreCorrupted`) unless every key and revocation
        written through this store is in Redis, after retrying as writes do."""
        await self.outage.require_durable()

    # API keys and revocations.

    async def create_key(self, user: str) -> tuple[KeyRecord, str]:
        """A new key, in Redis and in the local SQLite copy; the secret is never stored."""
        record, secret, digest = new_key(user, self.local.clock())
        await self.local.insert_key(record, digest)
        await self._write(lambda redis: redis.insert_key(record, digest))
        return record, secret

    async def find_key(self, secret: str, *, touch: bool = True) -> KeyRecord | None:
        """The active key of this secret: Redis' answer, or the local one while degraded."""
        digest = key_digest(secret)
        return await self._either(
            lambda: self._find_remotely(digest, touch), lambda: self._find_locally(digest, touch)
        )

    async def _find_remotely(self, digest: str, touch: bool) -> KeyRecord | None:
        record = await self.remote.find_digest(digest, touch=touch)
        self._remember(digest, record)
        return record

    async def _find_locally(self, digest: str, touch: bool) -> KeyRecord | None:
        record = self._recent.get(digest) or await self.local.find_digest(digest, touch=touch)
        if record is None or record.key_id in self._revoked.keys:
            return None
        return record

    def _remember(self, digest: str, record: KeyRecord | None) -> None:
        if record is None:
            self._recent.pop(digest, None)
            return
        self._recent[digest] = record
        self._recent.move_to_end(digest)
        if len(self._recent) > self._recent_size:
            self._recent.popitem(last=False)

    async def list_keys(self) -> list[KeyRecord]:
        return await self._either(self.remote.list_keys, self.local.list_keys)

    async def revoke_key(self, key_id: str) -> bool:
        """Revoke in Redis (or queue it) and in the SQLite copy; effective here at once."""
        self._revoked = self._revoked | Revocations(keys=frozenset([key_id]))
        revoked_here = await self.local.revoke_key(key_id)
        revoked = await self._write(lambda redis: redis.revoke_key(key_id))
        return revoked_here if revoked is None else bool(revoked)

    async def revoke_token(self, token_id: str, expires_at: float) -> None:
        await self.local.revoke_token(token_id, expires_at)
        await self._write(lambda redis: redis.revoke_token(token_id, expires_at))

    async def revocations(self) -> Revocations:
        """Redis' snapshot (or the last one) together with those in the SQLite copy."""
        snapshot = await self._either(self._read_revocations, self._last_revocations)
        return snapshot | await self.local.revocations()

    async def _read_revocations(self) -> Revocations:
        self._revoked = await self.remote.revocations()
        return self._revoked

    async def _last_revocations(self) -> Revocations:
        return self._revoked

    def assume_revoked(self, revocations: Revocations) -> None:
        """Take the last revocations this host knew (from disk) as in force until
        Redis answers: a restart during an outage still refuses those keys."""
        self._revoked = self._revoked | revocations

    # Limits.

    async def rate_limit(self, user: str, limit: int, window: float = 60.0) -> RateDecision:
        return await self._either(
            lambda: self.remote.rate_limit(user, limit, window),
            lambda: self.local.rate_limit(user, limit, window),
        )

    async def acquire_stream(self, user: str, limit: int, n: int = 1) -> bool:
        return await self._either(
            lambda: self._hold(user, self.remote.acquire_stream(user, limit, n), n, on_redis=True),
            lambda: self._hold(user, self.local.acquire_stream(user, limit, n), n, on_redis=False),
        )

    async def _hold(self, user: str, acquire: Awaitable[bool], n: int, *, on_redis: bool) -> bool:
        # Remember where each stream was taken, so that it is given back there.
        taken = await acquire
        if taken:
            self._streams.setdefault(user, []).extend([on_redis] * n)
        return taken

    async def release_stream(self, user: str, n: int = 1) -> None:
        """Give back `n` streams where they were taken; a Redis lease left behind expires.

        Which of the user's streams come back does not matter, only how many on
        each side: every one taken is given back exactly once."""
        held = self._streams.get(user)
        if not held:
            return
        given = held[-n:] if n > 0 else []
        del held[len(held) - len(given) :]
        if not held:
            del self._streams[user]
        on_redis = sum(given)
        if len(given) > on_redis:
            await self.local.release_stream(user, len(given) - on_redis)
        if not on_redis:
            return
        if self.outage.degraded:
            self.remote.forget_stream(user, on_redis)
        else:
            try:
                await self.remote.release_stream(user, on_redis)
            except StoreError as exc:
                self.outage.failed(exc)

    # Heartbeats, cache, cancel messages.

    async def publish_heartbeat(self, region: str, payload: Payload, ttl: float) -> None:
        await self._either(
            lambda: self.remote.publish_heartbeat(region, payload, ttl),
            lambda: self.local.publish_heartbeat(region, payload, ttl),
        )

    async def heartbeats(self) -> dict[str, Payload]:
        return await self._either(self.remote.heartbeats, self.local.heartbeats)

    async def cache_get(self, key: str) -> bytes | None:
        return await self._either(
            lambda: self.remote.cache_get(key), lambda: self.local.cache_get(key)
        )

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        await self._either(
            lambda: self.remote.cache_set(key, value, ttl),
            lambda: self.local.cache_set(key, value, ttl),
        )

    async def publish_cancel(self, instance: str, message: Payload) -> None:
        await self._either(
            lambda: self.remote.publish_cancel(instance, message),
            lambda: self.local.publish_cancel(instance, message),
        )

    @asynccontextmanager
    async def subscribe_cancels(self, instance: str) -> AsyncIterator[AsyncIterator[Payload]]:
        """Messages from Redis and, while degraded, from this process, in one iterator."""
        async with self.local.bus.subscribe(instance) as subscription:
            subscribed = asyncio.Event()
            pump = asyncio.create_task(
                self._pump_cancels(instance, subscription, subscribed), name="cancel-pump"
            )
            try:
                await subscribed.wait()
                yield subscription
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump

    async def _pump_cancels(
        self, instance: str, sink: Subscription, subscribed: asyncio.Event
    ) -> None:
        # Resubscribe after every loss; until then the local bus still delivers.
        delay = self.outage.retry_min
        while True:
            try:
                async with self.remote.subscribe_cancels(instance) as messages:
                    subscribed.set()
                    delay = self.outage.retry_min
                    async for message in messages:
                        sink.put(message)
            except StoreError as exc:
                self.outage.failed(exc)
            subscribed.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.outage.retry_max)
