"""A region's backends as plain data, and the choice of one for a request.

The choice is a pure function over the backends' state: no I/O, no clock, so
it is tested directly. The scheduler calls it; the health prober and the proxy
update the state it reads.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum


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
