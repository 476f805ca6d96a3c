"""Whether Redis is usable right now, the writes waiting for it, and the task that brings it back.

    healthy --StoreUnavailable--> degraded --ping ok, queued writes replayed--> healthy

While degraded nobody calls Redis (no request waits for a timeout); one task
pings it with backoff, `retry_min` doubling to `retry_max`. A `StoreCorrupted`
(Redis answered, but with an error: out of memory, wrong type) does not make the
store degraded; that one operation is answered locally and the error logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.lifecycle import BackgroundLoop
from gateway.store.base import StoreCorrupted, StoreError, StoreUnavailable
from gateway.store.redis_store import RedisStore

Write = Callable[[RedisStore], Awaitable[object]]
log = logging.getLogger("ghostgate.store")


class Outage(BackgroundLoop):
    """The degraded flag of one Redis connection, and its recovery (a task while open)."""

    def __init__(
        self,
        remote: RedisStore,
        *,
        retry_min: float = 0.1,
        retry_max: float = 1.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__("redis-reconnect")
        self.remote = remote
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.on_change = on_change
        self.degraded = False
        self.outages = 0  # times Redis was lost
        self.fallbacks = 0  # operations answered from local state
        self.pending: list[Write] = []  # shared writes to replay, in order
        self._lost = asyncio.Event()

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

    def defer(self, write: Write) -> None:
        """Keep a shared write (a key, a revocation) for when Redis is back."""
        self.pending.append(write)

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

    async def _try_recover(self) -> bool:
        try:
            await self.remote.ping()
            await self._replay()
        except StoreError:
            return False
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
            self.pending.pop(0)
