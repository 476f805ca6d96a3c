"""Slots and the wait queue: which request runs on which backend, and when.

A request takes a slot on a backend (`acquire`) and gives it back (`release`).
When every backend that serves its model is full, it waits in a bounded queue,
completions ahead of chat, for at most its wait budget; past either bound it
gets a 503 with Retry-After. A waiter that is cancelled (client gone,
superseded) is removed from the queue and never reaches a backend: holding
requests here rather than in Ollama's own queue is what saves the prefill of an
abandoned request.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from gateway.errors import ModelNotFound, NoCapacity
from gateway.pool.backends import Backend, Verdict, choose_backend


class Priority(IntEnum):
    """Lower runs first. Completions are latency-bound; chat can wait."""

    COMPLETION = 0
    CHAT = 1


@dataclass(eq=False)
class _Waiter:
    model: str
    priority: Priority
    seq: int
    exclude: Collection[Backend]
    future: asyncio.Future[Backend] = field(repr=False)


class Scheduler:
    """Hands out backend slots; owns the region's wait queue."""

    def __init__(self, backends: Sequence[Backend], *, queue_size: int) -> None:
        self.backends = list(backends)
        self.queue_size = queue_size
        self._queue: list[_Waiter] = []
        self._seq = itertools.count()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def inflight(self) -> int:
        return sum(b.inflight for b in self.backends)

    @property
    def capacity(self) -> int:
        return sum(b.slots for b in self.backends if b.healthy)

    async def acquire(
        self,
        model: str,
        *,
        priority: Priority,
        wait: float,
        exclude: Collection[Backend] = (),
    ) -> Backend:
        """A backend slot for `model`, waiting up to `wait` seconds for one."""
        choice = choose_backend(self.backends, model, exclude)
        if choice.backend is not None:
            return self._take(choice.backend)
        if choice.verdict is Verdict.UNKNOWN_MODEL:
            raise ModelNotFound(f'model "{model}" not found, try pulling it first')
        if choice.verdict is Verdict.UNAVAILABLE:
            # No healthy backend outside `exclude` serves the model: an excluded
            # one will not take this request, and a down one may not heal within
            # the budget. Fail fast rather than hold a queue slot on that hope;
            # Retry-After tells the client when to come back.
            raise NoCapacity(f'no healthy backend serves "{model}"', retry_after=2)
        if len(self._queue) >= self.queue_size or wait <= 0:
            raise NoCapacity("all backends are busy", retry_after=1)
        return await self._wait(model, priority, wait, exclude)

    def release(self, backend: Backend) -> None:
        """Give a slot back and hand it (or another) to the first waiter that fits."""
        backend.inflight -= 1
        self.dispatch()

    def dispatch(self) -> None:
        """Assign free slots to waiters in priority order; call after any capacity change."""
        if not self._queue:
            return
        for waiter in list(self._queue):
            if waiter.future.done():
                continue
            choice = choose_backend(self.backends, waiter.model, waiter.exclude)
            if choice.backend is not None:
                self._queue.remove(waiter)
                waiter.future.set_result(self._take(choice.backend))

    def snapshot(self) -> dict[str, object]:
        """The scheduler's state, for /readyz and tests."""
        return {
            "inflight": self.inflight,
            "queued": self.queued,
            "capacity": self.capacity,
            "queued_by_priority": {
                p.name.lower(): sum(1 for w in self._queue if w.priority is p) for p in Priority
            },
        }

    def __repr__(self) -> str:
        return f"<Scheduler inflight={self.inflight} queued={self.queued} backends={self.backends}>"

    def _take(self, backend: Backend) -> Backend:
        backend.inflight += 1
        backend.requests += 1
        return backend

    async def _wait(
        self, model: str, priority: Priority, wait: float, exclude: Collection[Backend]
    ) -> Backend:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(model, priority, next(self._seq), exclude, loop.create_future())
        self._insert(waiter)
        delivered = False
        try:
            async with asyncio.timeout(wait):
                backend = await waiter.future
            delivered = True
            return backend
        except TimeoutError:
            raise NoCapacity(
                f"all backends serving {model!r} stayed busy for {wait:g} s", retry_after=1
            ) from None
        finally:
            if not delivered:
                self._abandon(waiter)

    def _insert(self, waiter: _Waiter) -> None:
        # Stable order: by priority, then arrival. The queue is bounded and
        # short, so a linear insert costs less than a heap's bookkeeping.
        index = len(self._queue)
        while index > 0 and self._queue[index - 1].priority > waiter.priority:
            index -= 1
        self._queue.insert(index, waiter)

    def _abandon(self, waiter: _Waiter) -> None:
        # The waiter left without its slot (timeout, cancel). Two cases:
        # 1. still queued: drop it, so it never reaches a backend;
        # 2. dispatch() assigned a slot in the same loop turn as the cancel, so
        #    the await raised although the future holds a backend: give it back.
        if waiter in self._queue:
            self._queue.remove(waiter)
        if waiter.future.done() and not waiter.future.cancelled():
            self.release(waiter.future.result())
        else:
            waiter.future.cancel()
