"""In-process equivalents of the shared primitives, for the embedded store and fallback.

Each is plain data plus a clock, no I/O, so the embedded store and the tests can
use them directly. They are exact within one process; across processes (no
Redis, or Redis away) every process enforces its limits on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from gateway.store.base import Payload, RateDecision

Clock = Callable[[], float]
SUBSCRIPTION_QUEUE = 10_000

log = logging.getLogger("ghostgate.store")


class SlidingWindowLimiter:
    """Per-user sliding-window log: at most `limit` allowed requests in any `window` seconds."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._logs: dict[str, deque[float]] = {}

    def hit(self, user: str, limit: int, window: float) -> RateDecision:
        now = self._clock()
        entries = self._logs.setdefault(user, deque())
        while entries and entries[0] <= now - window:
            entries.popleft()
        if len(entries) < limit:
            entries.append(now)
            return RateDecision(allowed=True, retry_after=0.0, remaining=limit - len(entries))
        # Denied hits are not logged: hammering does not push the reopening back.
        retry = entries[0] + window - now if entries else window
        return RateDecision(allowed=False, retry_after=max(retry, 0.0), remaining=0)

    def __repr__(self) -> str:
        return f"SlidingWindowLimiter(users={len(self._logs)})"


class StreamCounter:
    """Concurrent streams per user; a crashed process takes its counts with it."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def acquire(self, user: str, limit: int, n: int = 1) -> bool:
        count = self._open.get(user, 0)
        if count + n > limit:
            return False
        self._open[user] = count + n
        return True

    def release(self, user: str, n: int = 1) -> None:
        count = self._open.get(user, 0) - n
        if count > 0:
            self._open[user] = count
        else:
            self._open.pop(user, None)

    def count(self, user: str) -> int:
        return self._open.get(user, 0)

    def __repr__(self) -> str:
        return f"StreamCounter({self._open!r})"


class HeartbeatBoard:
    """The last heartbeat of each region, forgotten when its TTL runs out."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._beats: dict[str, tuple[Payload, float]] = {}

    def publish(self, region: str, payload: Payload, ttl: float) -> None:
        self._beats[region] = (dict(payload), self._clock() + ttl)

    def snapshot(self) -> dict[str, Payload]:
        now = self._clock()
        for region in [r for r, (_, expires) in self._beats.items() if expires <= now]:
            del self._beats[region]
        return {region: dict(payload) for region, (payload, _) in self._beats.items()}


class Subscription:
    """Messages for one subscriber, in arrival order; a full queue drops the newest."""

    def __init__(self, maxsize: int = SUBSCRIPTION_QUEUE) -> None:
        self._queue: asyncio.Queue[Payload] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, message: Payload) -> None:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("cancel subscriber too slow; message dropped")

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Payload:
        return await self._queue.get()


class CancelBus:
    """Cancel messages by instance name, delivered to every subscriber in this process."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = {}

    def publish(self, instance: str, message: Payload) -> int:
        subscribers = self._subscribers.get(instance, set())
        for subscription in subscribers:
            subscription.put(dict(message))
        return len(subscribers)

    @asynccontextmanager
    async def subscribe(self, instance: str) -> AsyncIterator[Subscription]:
        subscription = Subscription()
        self._subscribers.setdefault(instance, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers[instance]
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[instance]

    def __repr__(self) -> str:
        counts = {name: len(subs) for name, subs in self._subscribers.items()}
        return f"CancelBus({counts!r})"
