"""A region's backends as plain data, the choice of one for a request, and the
choice of the waiter a free slot goes to.

The choices are pure functions over the backends' state, the users' holdings
and the waiters: no I/O, no clock, so they are tested directly. The scheduler
calls them; the health prober and the proxy update the state they read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar


def normalize_model(name: str) -> str:
    """Ollama's canonical model name: a bare name means the `latest` tag."""
    name = name.strip()
    for prefix in ("registry.ollama.ai/library/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    base = name.rsplit("/", 1)[-1]
    return name if ":" in base else f"{name}:latest"


@dataclass(slots=True, eq=False)
class Backend:
    """One Ollama server: what it serves, what it has loaded, how busy it is."""

    url: str
    slots: int
    healthy: bool = False
    models: frozenset[str] = frozenset()
    loaded: frozenset[str] = frozenset()
    inflight: int = 0
    consecutive_failures: int = 0
    last_error: str = ""
    requests: int = 0
    details: dict[str, object] = field(default_factory=dict)

    @property
    def free(self) -> int:
        return self.slots - self.inflight

    def serves(self, model: str) -> bool:
        return model in self.models

    def __repr__(self) -> str:
        state = "healthy" if self.healthy else "down"
        return (
            f"<Backend {self.url} {state} inflight={self.inflight}/{self.slots} "
            f"models={len(self.models)} loaded={sorted(self.loaded)}>"
        )


class Verdict(Enum):
    """What `choose_backend` concluded."""

    CHOSEN = "chosen"
    BUSY = "busy"  # some healthy backend serves the model, none has a free slot
    UNKNOWN_MODEL = "unknown_model"  # no backend at all lists the model
    UNAVAILABLE = "unavailable"  # only unhealthy backends serve it, or none is healthy


@dataclass(frozen=True, slots=True)
class BackendChoice:
    verdict: Verdict
    backend: Backend | None = None


def choose_backend(
    backends: Sequence[Backend], model: str, exclude: Collection[Backend] = ()
) -> BackendChoice:
    """Pick a healthy backend with `model` and a free slot.

    Preference: the model already loaded (no load time), then the fewest
    outstanding requests, then list order (stable, so ties do not flap).
    """
    best: Backend | None = None
    best_key: tuple[int, int] = (2, 0)
    busy = False
    for backend in backends:
        if not backend.healthy or backend in exclude or not backend.serves(model):
            continue
        if backend.free <= 0:
            busy = True
            continue
        key = (0 if model in backend.loaded else 1, backend.inflight)
        if key < best_key:
            best, best_key = backend, key
    if best is not None:
        return BackendChoice(Verdict.CHOSEN, best)
    if busy:
        return BackendChoice(Verdict.BUSY)
    if any(b.serves(model) for b in backends) or not any(b.healthy for b in backends):
        return BackendChoice(Verdict.UNAVAILABLE)
    return BackendChoice(Verdict.UNKNOWN_MODEL)


def served_models(backends: Iterable[Backend]) -> list[str]:
    """Every model some healthy backend serves, sorted."""
    return sorted({m for b in backends if b.healthy for m in b.models})


@dataclass(eq=False)
class Waiter:
    """A queued request as `next_grant` sees it (the scheduler's has its future)."""

    user: str
    model: str
    exclude: Collection[Backend] = ()
    slot_share: float = 1.0  # of the region's slots, held while others wait


W = TypeVar("W", bound=Waiter)


@dataclass(frozen=True, slots=True)
class Grant(Generic[W]):
    """What `next_grant` decided: a waiter and its backend, or nothing to do."""

    waiter: W | None = None
    backend: Backend | None = None
    # Waiters that could have run now but were passed over by the share rule.
    held_back: tuple[W, ...] = ()


def over_share(held: int, capacity: int, share: float) -> bool:
    """Whether a user holding `held` of `capacity` slots is at or over `share` of them."""
    return share < 1.0 and held >= share * capacity


def next_grant(
    rings: Iterable[Mapping[str, Iterable[W]]],
    backends: Sequence[Backend],
    held: Mapping[str, int],
    capacity: int,
    users_waiting: int,
) -> Grant[W]:
    """The next waiter to get a slot, fairly, and the backend it goes to.

    `rings` are in priority order; each maps a user to their waiters (FIFO), the
    users in ring order. `held` is each user's slots, `capacity` the region's
    healthy slots, `users_waiting` the distinct users in every ring. The first
    user with a waiter some backend can take now gets it (their first such
    waiter: a busy model does not block their others), unless they are over
    their share and another user waits; when only such users could run, the
    first of them does.
    """
    if not any(b.healthy and b.free > 0 for b in backends):
        return Grant()
    busy: set[str] = set()  # models no backend can take now, asked once per grant
    passed: list[W] = []
    fallback: tuple[W, Backend] | None = None
    for ring in rings:
        for user, waiters in ring.items():
            found = _first_runnable(waiters, backends, busy)
            if found is None:
                continue
            waiter, backend = found
            if users_waiting > 1 and over_share(held.get(user, 0), capacity, waiter.slot_share):
                passed.append(waiter)
                fallback = fallback or found
                continue
            return Grant(waiter, backend, tuple(passed))
    if fallback is not None:
        # Nobody under their share can use a free slot: the first passed over takes it.
        return Grant(*fallback)
    return Grant()


def _first_runnable(
    waiters: Iterable[W], backends: Sequence[Backend], busy: set[str]
) -> tuple[W, Backend] | None:
    for waiter in waiters:
        if not waiter.exclude and waiter.model in busy:
            continue
        choice = choose_backend(backends, waiter.model, waiter.exclude)
        if choice.backend is not None:
            return waiter, choice.backend
        if not waiter.exclude:
            busy.add(waiter.model)
    return None
