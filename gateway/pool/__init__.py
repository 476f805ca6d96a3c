"""The backend pool: a region's Ollama (or OpenAI-compatible) backends, their
slots and wait queue, their health, and the pooled connections to them.

    backends   `Backend` state as plain data and `choose_backend`, a pure function
    scheduler  slots and the bounded wait queue (`Scheduler`)
    health     `HealthProber`: /api/tags and /api/ps of every backend, every second
    upstream   `Upstream`: one aiohttp pool for every backend, errors mapped once
    relay      `Relay`: a job onto a backend, retried elsewhere before the first byte
"""

from __future__ import annotations

from gateway.pool.backends import (
    Backend,
    BackendChoice,
    Verdict,
    choose_backend,
    normalize_model,
    served_models,
)
from gateway.pool.health import HealthProber
from gateway.pool.relay import Job, Relay
from gateway.pool.scheduler import Priority, Scheduler
from gateway.pool.upstream import (
    Upstream,
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamDisconnected,
    UpstreamResponse,
)

__all__ = [
    "Backend",
    "BackendChoice",
    "HealthProber",
    "Job",
    "Priority",
    "Relay",
    "Scheduler",
    "Upstream",
    "UpstreamConnectError",
    "UpstreamConnectTimeout",
    "UpstreamDisconnected",
    "UpstreamResponse",
    "Verdict",
    "choose_backend",
    "normalize_model",
    "served_models",
]
