"""Slots and the wait queue: which request runs on which backend, and when.

A request takes a slot on a backend (`acquire`) and gives it back (`release`).
When every backend that serves its model is full, it waits in a bounded queue
for at most its wait budget; past the region's bound or the budget it gets a
503 with Retry-After. A waiter that is cancelled (client gone, superseded) is
removed from the queue and never reaches a backend: holding requests here
rather than in Ollama's own queue is what saves the prefill of an abandoned
request.

The queue is fair across users (token subjects), so one user's burst cannot
starve the others (`next_grant` in gateway/pool/backends.py decides):

- Completions go before chat. Within a priority each user has a FIFO and the
  users form a ring: the next slot goes to the first user in the ring, who then
  moves to its end. A user who starts waiting joins at the end, as if just
  served, so leaving and rejoining never jumps the ring.
- One user may have `UserBounds.queue` waiters; past it, a 429: it is their
  burst, not the region's capacity.
- While another user waits (at any priority: this bound is about users), a
  user holding `UserBounds.slot_share` of the region's healthy slots gets no
  new one. When only such users can use a free slot, they get it: no slot
  idles while a request could run on it.

Costs with U users waiting: enqueueing is O(1), a cancel O(that user's queue);
a grant stops at the first user who may run, at worst O(U + waiters) set
lookups and one `choose_backend` per model, and is O(backends) with no free slot.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from gateway.errors import ModelNotFound, NoCapacity, RateLimited
from gateway.pool.backends import Backend, Verdict, Waiter, choose_backend, next_grant


class Priority(IntEnum):
    """Lower runs first. Completions are latency-bound; chat can wait."""

    COMPLETION = 0
    CHAT = 1


@dataclass(frozen=True, slots=True)
class UserBounds:
    """One user's bounds in the queue (the relay passes `Limits`'); the defaults are off."""

    queue: int = 0  # waiters at once; past it, 429. 0: no bound
    slot_share: float = 1.0  # of healthy slots, held while others wait. 1.0: no bound


UNBOUNDED = UserBounds()


def _count(counts: dict[str, int], user: str, delta: int) -> None:
    # Only users with a count are kept, so the dict is bounded by the queue and the slots.
    left = counts.get(user, 0) + delta
    if left > 0:
        counts[user] = left
    else:
        counts.pop(user, None)


@dataclass(eq=False)
class _Queued(Waiter):
    priority: Priority = Priority.COMPLETION
    future: asyncio.Future[Backend] = field(kw_only=True, repr=False)
    queued: bool = True
    held_back: bool = False  # passed over by the share rule at least once (counted once)


class Scheduler:
    """Hands out backend slots; owns the region's wait queue."""

    def __init__(self, backends: Sequence[Backend], *, queue_size: int) -> None:
        self.backends = list(backends)
        self.queue_size = queue_size
        # Per priority: user -> their waiters, users in ring order.
        self._rings: dict[Priority, OrderedDict[str, deque[_Queued]]] = {
            p: OrderedDict() for p in Priority
        }
        self._queued = 0
        self._waiting: dict[str, int] = {}  # user -> waiters, every priority
        self._held: dict[str, int] = {}  # user -> slots held
        # Counters for gateway/metrics.py, read at scrape time.
        self.share_held_back = 0
        self.user_queue_refusals = 0

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def inflight(self) -> int:
        return sum(b.inflight for b in self.backends)

    @property
    def capacity(self) -> int:
        return sum(b.slots for b in self.backends if b.healthy)

    @property
    def users_waiting(self) -> int:
        return len(self._waiting)

    async def acquire(
        self,
        model: str,
        *,
        priority: Priority,
        wait: float,
        exclude: Collection[Backend] = (),
        user: str = "",
        bounds: UserBounds = UNBOUNDED,
    ) -> Backend:
        """A backend slot for `model`, waiting up to `wait` seconds for one.

        `user` holds the slot until `release(backend, user)`; `bounds` are that
        user's bounds in the queue.
        """
        choice = choose_backend(self.backends, model, exclude)
        if choice.backend is not None:
            # A free slot here means no waiter can use it (dispatch gave away
            # every slot a waiter could take), so taking it passes nobody.
            return self._take(choice.backend, user)
        if choice.verdict is Verdict.UNKNOWN_MODEL:
            raise ModelNotFound(f'model "{model}" not found, try pulling it first')
        if choice.verdict is Verdict.UNAVAILABLE:
            # No healthy backend outside `exclude` serves the model: an excluded
            # one will not take this request, and a down one may not heal within
            # the budget. Fail fast rather than hold a queue slot on that hope;
            # Retry-After tells the client when to come back.
            raise NoCapacity(f'no healthy backend serves "{model}"', retry_after=2)
        if wait <= 0:
            raise NoCapacity("all backends are busy", retry_after=1)
        if bounds.queue > 0 and self._waiting.get(user, 0) >= bounds.queue:
            self.user_queue_refusals += 1
            raise RateLimited(
                f"this user already has {bounds.queue} requests waiting for a slot",
                retry_after=1,
            )
        if self._queued >= self.queue_size:
            raise NoCapacity("all backends are busy", retry_after=1)
        loop = asyncio.get_running_loop()
        waiter = _Queued(
            user, model, exclude, bounds.slot_share, priority=priority, future=loop.create_future()
        )
        return await self._wait(waiter, wait)

    def release(self, backend: Backend, user: str = "") -> None:
        """Give `user`'s slot back and hand free slots to the waiters, fairly."""
        backend.inflight -= 1
        _count(self._held, user, -1)
        self.dispatch()

    def dispatch(self) -> None:
        """Assign free slots to waiters (`next_grant`); call after any capacity change."""
        if not self._queued:
            return
        capacity = self.capacity
        while self._queued:
            grant = next_grant(
                self._rings.values(), self.backends, self._held, capacity, len(self._waiting)
            )
            for passed in grant.held_back:
                if not passed.held_back:
                    passed.held_back = True
                    self.share_held_back += 1
            waiter, backend = grant.waiter, grant.backend
            if waiter is None or backend is None:
                return
            if waiter.future.done():
                # Cancelled, its task not yet run to leave: drop it now, unserved.
                self._dequeue(waiter, served=False)
                continue
            self._dequeue(waiter, served=True)
            waiter.future.set_result(self._take(backend, waiter.user))

    def snapshot(self) -> dict[str, object]:
        """The scheduler's state, for /readyz and tests."""
        return {
            "inflight": self.inflight,
            "queued": self.queued,
            "capacity": self.capacity,
            "queued_by_priority": {
                p.name.lower(): sum(len(w) for w in self._rings[p].values()) for p in Priority
            },
            "users_waiting": self.users_waiting,
            "max_user_inflight": max(self._held.values(), default=0),
        }

    def __repr__(self) -> str:
        return f"<Scheduler inflight={self.inflight} queued={self.queued} backends={self.backends}>"

    def _take(self, backend: Backend, user: str) -> Backend:
        backend.inflight += 1
        backend.requests += 1
        _count(self._held, user, +1)
        return backend

    async def _wait(self, waiter: _Queued, wait: float) -> Backend:
        self._enqueue(waiter)
        delivered = False
        try:
            async with asyncio.timeout(wait):
                backend = await waiter.future
            delivered = True
            return backend
        except TimeoutError:
            raise NoCapacity(
                f"all backends serving {waiter.model!r} stayed busy for {wait:g} s",
                retry_after=1,
            ) from None
        finally:
            if not delivered:
                self._abandon(waiter)

    def _enqueue(self, waiter: _Queued) -> None:
        ring = self._rings[waiter.priority]
        fifo = ring.get(waiter.user)
        if fifo is None:
            ring[waiter.user] = fifo = deque()  # joins the ring at its end
        fifo.append(waiter)
        self._queued += 1
        _count(self._waiting, waiter.user, +1)

    def _dequeue(self, waiter: _Queued, *, served: bool) -> None:
        ring = self._rings[waiter.priority]
        fifo = ring[waiter.user]
        fifo.remove(waiter)  # the head, unless a busy model held the head back
        if not fifo:
            del ring[waiter.user]
        elif served:
            ring.move_to_end(waiter.user)
        waiter.queued = False
        self._queued -= 1
        _count(self._waiting, waiter.user, -1)

    def _abandon(self, waiter: _Queued) -> None:
        # The waiter left without its slot (timeout, cancel). Two cases:
        # 1. still queued: drop it, so it never reaches a backend;
        # 2. dispatch() assigned a slot in the same loop turn as the cancel, so
        #    the await raised although the future holds a backend: give it back.
        if waiter.queued:
            self._dequeue(waiter, served=False)
        if waiter.future.done() and not waiter.future.cancelled():
            self.release(waiter.future.result(), waiter.user)
        else:
            waiter.future.cancel()
