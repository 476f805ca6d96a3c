"""What the simulated worker counts, and the log of recent requests, for `/sim/*`.

The counters that matter most to Ghostgate are the waste counters:
`tokens_after_client_left` (decode work done for nobody) and
`prompt_tokens_after_client_left` (prefill work done for nobody). A gateway
that closes its upstream connection when its client leaves keeps the first
at 0-1 per cancel; one that holds abandoned requests in its own queue keeps
the second at 0.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

LOG_SIZE = 50


@dataclass(slots=True)
class Counters:
    """Monotonic counts since start or the last `/sim/reset`."""

    requests: int = 0
    completed: int = 0
    aborted: int = 0
    rejected_busy: int = 0
    errors: int = 0  # answered 4xx
    tokens_generated: int = 0
    tokens_after_client_left: int = 0
    prompt_tokens: int = 0
    prompt_tokens_after_client_left: int = 0
    models_loaded: int = 0


@dataclass(slots=True)
class Stats:
    """Counters for the worker as a whole and per model, plus the peak of busy slots."""

    total: Counters = field(default_factory=Counters)
    per_model: dict[str, Counters] = field(default_factory=dict)
    peak_active: int = 0

    def model(self, name: str) -> Counters:
        counters = self.per_model.get(name)
        if counters is None:
            counters = self.per_model[name] = Counters()
        return counters

    def both(self, name: str) -> tuple[Counters, Counters]:
        """(total, per model): every event is counted in both."""
        return self.total, self.model(name)

    def saw_active(self, active: int) -> None:
        self.peak_active = max(self.peak_active, active)

    def reset(self, active: int) -> None:
        """Zero every counter; the peak restarts from what is busy now.

        In place: requests in flight hold these objects and keep counting.
        """
        for counters in (self.total, *self.per_model.values()):
            for item in fields(counters):
                setattr(counters, item.name, 0)
        self.peak_active = active

    def snapshot(self) -> dict[str, Any]:
        """The counters as `/sim/stats` shows them (gauges are added by the engine)."""
        return {
            **asdict(self.total),
            "peak_active": self.peak_active,
            "models": {name: asdict(c) for name, c in sorted(self.per_model.items())},
        }


@dataclass(slots=True)
class RequestLog:
    """The last `LOG_SIZE` generation requests, for tests to see what reached the backend.

    Entries are plain dicts, updated in place as the request goes on (status,
    aborted, done_reason), so a test can read them while a stream runs.
    """

    entries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_SIZE))

    def open(self, path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "path": path,
            "model": None,
            "prompt": None,
            "raw": None,
            "suffix": None,
            "options": None,
            "stream": None,
            "status": None,
            "aborted": False,
            "done_reason": None,
        }
        self.entries.append(entry)
        return entry

    def snapshot(self) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self.entries]

    def clear(self) -> None:
        self.entries.clear()


CLOSE_LOG_SIZE = 10_000


@dataclass(slots=True)
class CloseLog:
    """When a client's connection closed while its generation was running.

    Times are `time.monotonic()`, which on Linux is one clock for every process
    on the machine: a benchmark compares them with the moment its client
    cancelled, to measure how fast a cancel reaches the backend through a proxy
    (`GET /sim/closes`). The stamp is taken when the connection is lost, not at
    the next token, where the engine notices it.
    """

    watched: dict[object, str] = field(default_factory=dict)  # connection -> prompt tag
    closes: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=CLOSE_LOG_SIZE))

    def watch(self, connection: object, prompt: str) -> None:
        self.watched[connection] = prompt[:100]

    def unwatch(self, connection: object) -> None:
        self.watched.pop(connection, None)

    def lost(self, connection: object) -> None:
        now = time.monotonic()
        prompt = self.watched.pop(connection, None)
        if prompt is not None:
            self.closes.append({"prompt": prompt, "closed_at": now})

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self.closes)

    def clear(self) -> None:
        self.closes.clear()
