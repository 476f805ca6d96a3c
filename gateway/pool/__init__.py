"""The backend pool: a region's Ollama (or OpenAI-compatible) backends, their
slots and wait queue, their health, and the pooled connections to them.

    backends   `Backend` state as plain data; `choose_backend` and `next_grant`, pure
    scheduler  slots and the bounded, fair wait queue (`Scheduler`)
    health     `HealthProber`: /api/tags and /api/ps of every backend, every second
    upstream   `Upstream`: one aiohttp pool for every backend, errors mapped once
    relay      `Relay`: a job onto a backend, retried elsewhere before the first byte
"""

from __future__ import annotations

from gateway.pool.backends import (
    Backend,
    BackendChoice,
    Grant,
    Verdict,
    Waiter,
    choose_backend,
    next_grant,
    normalize_model,
    over_share,
    served_models,
)
from gateway.pool.health import HealthProber
from gateway.pool.relay import Job, Relay
from gateway.pool.scheduler import Priority, Scheduler, UserBounds
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
    "Grant",
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
    "UserBounds",
    "Verdict",
    "Waiter",
    "choose_backend",
    "next_grant",
    "normalize_model",
    "over_share",
    "served_models",
]
