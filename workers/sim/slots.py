"""Generation slots, the bounded wait for one, and which models are loaded.

As in Ollama, each model gets `parallel` slots (one runner per model, each with
OLLAMA_NUM_PARALLEL sequences), and requests that find no free slot wait in
one queue bounded by OLLAMA_MAX_QUEUE across all models; beyond it, 503.
The decision is the pure `admit`; `SlotPool` applies it with futures.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from workers.sim.errors import ServerBusy


class Admission(Enum):
    RUN = "run"
    WAIT = "wait"
    REJECT = "reject"


def admit(free_slots: int, waiting: int, max_queue: int) -> Admission:
    """Run now, wait in the queue, or refuse (the queue is full)."""
    if free_slots > 0:
        return Admission.RUN
    if waiting < max_queue:
        return Admission.WAIT
    return Admission.REJECT


class SlotPool:
    """Per-model slots handed over in FIFO order; one shared queue bound."""

    def __init__(self, parallel: int, max_queue: int) -> None:
        self.parallel = parallel
        self.max_queue = max_queue
        self.active = 0  # slots held, all models
        self.queued = 0  # requests waiting, all models
        self._held: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    async def acquire(self, model: str) -> None:
        """Take a slot for `model`, waiting if needed; `ServerBusy` when the queue is full."""
        decision = admit(self.parallel - self._held.get(model, 0), self.queued, self.max_queue)
        if decision is Admission.RUN:
            self._held[model] = self._held.get(model, 0) + 1
            self.active += 1
            return
        if decision is Admission.REJECT:
            raise ServerBusy()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters.setdefault(model, deque())
        queue.append(waiter)
        self.queued += 1
        try:
            # `release` hands its slot over by resolving the waiter: `active`
            # and the model's count do not change on a hand-over.
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                # Still queued, unless `release` already popped and skipped it.
                if waiter in queue:
                    queue.remove(waiter)
                    self.queued -= 1
            else:
                self.release(model)  # handed a slot as we were cancelled: pass it on
            raise

    def release(self, model: str) -> None:
        """Give the slot to the next live waiter for `model`, or free it."""
        queue = self._waiters.get(model)
        while queue:
            waiter = queue.popleft()
            self.queued -= 1
            if not waiter.done():
                waiter.set_result(None)
                return
        self._held[model] -= 1
        self.active -= 1

    def __repr__(self) -> str:
        return f"<SlotPool active={self.active} queued={self.queued} parallel={self.parallel}>"


@dataclass(slots=True)
class _Resident:
    loaded: bool = False
    loading: asyncio.Future[None] | None = None
    users: int = 0
    keep_alive: float = 0.0
    expires_at: float = math.inf  # monotonic; only meaningful with no users


@dataclass(slots=True)
class Residency:
    """Which models are in (simulated) VRAM: loaded once on first use, unloaded
    `keep_alive` seconds after their last use ends (never while in use)."""

    clock: Callable[[], float] = time.monotonic
    _models: dict[str, _Resident] = field(default_factory=dict)

    def enter(self, model: str, keep_alive: float) -> None:
        """A request starts using `model`: it cannot expire until `leave`."""
        resident = self._resident(model)
        resident.users += 1
        resident.keep_alive = keep_alive

    def leave(self, model: str, keep_alive: float) -> None:
        """A request is done with `model`; negative `keep_alive` keeps it forever."""
        resident = self._resident(model)
        resident.users -= 1
        resident.keep_alive = keep_alive
        resident.expires_at = math.inf if keep_alive < 0 else self.clock() + keep_alive
        if resident.users == 0 and keep_alive == 0:
            resident.loaded = False

    async def load(self, model: str, seconds: float) -> bool:
        """Return once `model` is loaded, sleeping `seconds` if this call loads it.

        Concurrent callers share one load, and it is never interrupted by a
        client leaving (only by shutdown). True if this call did the loading.
        """
        resident = self._resident(model)
        loaded_here = False
        while not resident.loaded:
            if resident.loading is not None:
                await asyncio.shield(resident.loading)
                continue
            loading: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            resident.loading = loading
            try:
                await asyncio.sleep(seconds)
                resident.loaded = loaded_here = True
            finally:
                # Wake the requests sharing this load; if it was cancelled
                # (shutdown), one of them starts it again.
                resident.loading = None
                loading.set_result(None)
        return loaded_here

    def unload(self, model: str) -> None:
        """Drop `model` now if nobody uses it (generate with keep_alive 0 and no prompt)."""
        resident = self._resident(model)
        if resident.users == 0:
            resident.loaded = False

    def loaded(self) -> dict[str, float]:
        """Loaded models -> seconds until they expire (inf: forever or in use)."""
        now = self.clock()
        result: dict[str, float] = {}
        for name, resident in self._models.items():
            self._expire(resident, now)
            if resident.loaded:
                if resident.users == 0:
                    result[name] = resident.expires_at - now
                else:
                    result[name] = math.inf if resident.keep_alive < 0 else resident.keep_alive
        return result

    def _resident(self, model: str) -> _Resident:
        resident = self._models.get(model)
        if resident is None:
            resident = self._models[model] = _Resident()
        self._expire(resident, self.clock())
        return resident

    @staticmethod
    def _expire(resident: _Resident, now: float) -> None:
        if resident.loaded and resident.users == 0 and now >= resident.expires_at:
            resident.loaded = False
