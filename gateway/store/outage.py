"""Whether Redis is usable right now, the writes waiting for it, and the task that brings it back.

    healthy --StoreUnavailable--> degraded --ping ok, queued writes replayed--> healthy

While degraded nobody calls Redis (no request waits for a timeout); one task
pings it with backoff, `retry_min` doubling to `retry_max`. A `StoreCorrupted`
(Redis answered, but with an error: out of memory, wrong type) does not make the
store degraded; that one operation is answered locally and the error logged.

Shared writes (keys, revocations) go through `write`. One that Redis refuses
is tried again `write_retries` times, after `write_backoff` s doubling, so that
a short outage costs its caller a wait rather than the write; after that it is
queued for replay, oldest first, `replay_limit` writes at most: past the bound
a write stays in the local SQLite copy only. A write made while already
degraded is queued at once (the hot path never waits). `require_durable` is for
a caller that must know (the `ghostgate keys` commands): it retries the queue
the same way and raises if Redis stays away. A write that never reaches Redis
is counted by why: `rejected` (Redis answered with an error), `queue_full`, or
`abandoned` (still queued when the store closed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.lifecycle import BackgroundLoop
from gateway.store.base import StoreCorrupted, StoreError, StoreUnavailable
from gateway.store.redis_store import RedisStore

Write = Callable[[RedisStore], Awaitable[object]]
FAILURE_REASONS = ("rejected", "queue_full", "abandoned")
log = logging.getLogger("ghostgate.store")


class Outage(BackgroundLoop):
    """The degraded flag of one Redis connection, and its recovery (a task while open)."""

    def __init__(
        self,
        remote: RedisStore,
        *,
        retry_min: float = 0.1,
        retry_max: float = 1.0,
        write_retries: int = 3,
        write_backoff: float = 0.2,
        replay_limit: int = 10_000,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__("redis-reconnect")
        self.remote = remote
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.write_retries = write_retries
        self.write_backoff = write_backoff
        self.replay_limit = replay_limit
        self.on_change = on_change
        self.degraded = False
        self.outages = 0  # times Redis was lost
        self.fallbacks = 0  # operations answered from local state
        self.retries = 0  # writes tried again after Redis refused them
        self.failures = dict.fromkeys(FAILURE_REASONS, 0)  # writes that never reached Redis
        self.pending: list[Write] = []  # shared writes to replay, in order
        self._lost = asyncio.Event()
        # The reconnect task and `require_durable` may both replay: one at a time,
        # or a write would be popped before it was applied.
        self._replaying = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"Outage(degraded={self.degraded}, outages={self.outages}, "
            f"fallbacks={self.fallbacks}, pending={len(self.pending)})"
        )

    def failed(self, exc: StoreError) -> None:
        """Note a failed Redis operation; the caller answers it locally."""
        self.fallbacks += 1
        if isinstance(exc, StoreUnavailable):
            self._degrade(exc)
        else:
            log.error("redis refused an operation, answered locally: %s", exc)

    def served_locally(self) -> None:
        self.fallbacks += 1

    def backoff(self) -> list[float]:
        """The wait before each retry of a refused write: `write_backoff`, doubling."""
        return [self.write_backoff * 2**attempt for attempt in range(max(0, self.write_retries))]

    async def write(self, write: Write) -> object | None:
        """Apply a shared write in Redis, retried through a short outage; else queue
        it for replay and return None (also at once while degraded)."""
        if not self.degraded:
            for delay in [0.0, *self.backoff()]:
                if delay:
                    await asyncio.sleep(delay)
                    if self.pending:
                        break  # writes queued before this one must reach Redis first
                    self.retries += 1
                try:
                    return await write(self.remote)
                except StoreCorrupted as exc:
                    self.failed(exc)  # Redis would refuse it again: not queued
                    self.failures["rejected"] += 1
                    return None
                except StoreUnavailable as exc:
                    self._degrade(exc)  # meanwhile other operations go local at once
        self.served_locally()
        self.defer(write)
        return None

    def defer(self, write: Write) -> None:
        """Keep a shared write (a key, a revocation) for when Redis is back, within the bound."""
        if len(self.pending) >= self.replay_limit:
            self.failures["queue_full"] += 1
            log.error("replay queue full (%d writes): a write stays local only", self.replay_limit)
            return
        self.pending.append(write)

    async def require_durable(self) -> None:
        """Return once every write made through this store is in Redis, retrying as
        `write` does: `StoreUnavailable` if Redis stays away, `StoreCorrupted` if
        some write will never get there."""
        for delay in [0.0, *self.backoff()]:
            if delay:
                await asyncio.sleep(delay)
                self.retries += 1
            if not self.pending or await self._try_recover():
                break
        else:
            raise StoreUnavailable(f"redis did not come back: {len(self.pending)} writes not in it")
        lost = self.failures["rejected"] + self.failures["queue_full"]
        if lost:
            raise StoreCorrupted(f"{lost} writes never reached redis (see the log)")

    def _degrade(self, exc: StoreError) -> None:
        if self.degraded:
            return
        self.degraded = True
        self.outages += 1
        log.warning("redis unavailable, serving from local state: %s", exc)
        self._lost.set()
        if self.on_change is not None:
            self.on_change(True)

    async def _loop(self) -> None:
        while True:
            await self._lost.wait()
            self._lost.clear()
            delay = self.retry_min
            while not await self._try_recover():
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)

    async def _close(self) -> None:
        if self.pending:
            self.failures["abandoned"] += len(self.pending)
            log.error(
                "closing with %d writes not replayed into redis: they are in the "
                "local SQLite copy only",
                len(self.pending),
            )
            self.pending.clear()

    async def _try_recover(self) -> bool:
        async with self._replaying:
            try:
                await self.remote.ping()
                await self._replay()
            except StoreError:
                return False
        if self.degraded:
            self.degraded = False
            log.warning("redis is back; shared state restored")
            if self.on_change is not None:
                self.on_change(False)
        return True

    async def _replay(self) -> None:
        # Oldest first, so a key is inserted before its revocation is replayed.
        while self.pending:
            try:
                await self.pending[0](self.remote)
            except StoreCorrupted as exc:
                log.error("dropping a write Redis refused: %s", exc)
                self.failures["rejected"] += 1
            self.pending.pop(0)
