"""Putting one generation on a backend: a slot, a pooled connection, retries.

`Relay.open` takes a slot, sends the request and returns the backend's response
once its headers are in. A backend that cannot be reached, or answers "server
busy", is skipped for the next one; that is safe because the client has seen
nothing yet. Once `open` returns, the request is committed to that backend.
`Relay.finish` always runs (in `finally`): it closes the response, which drops
the connection if the body was not fully read so Ollama stops generating, and
gives the slot back. The slot is the user's (the token's subject, `trace.user`)
from `open` to `finish`, for the scheduler's fair share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.errors import GatewayError, NoCapacity
from gateway.pool.backends import Backend
from gateway.pool.health import HealthProber
from gateway.pool.scheduler import Priority, Scheduler, UserBounds
from gateway.pool.upstream import (
    Upstream,
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamResponse,
)
from gateway.settings import Limits
from gateway.trace import Stage, Trace


@dataclass(frozen=True, slots=True)
class Job:
    """One generation to run: the model, the backend path and the exact body."""

    model: str
    path: str
    body: bytes
    priority: Priority


class Relay:
    """Runs jobs on the region's backends."""

    def __init__(
        self, scheduler: Scheduler, upstream: Upstream, prober: HealthProber, limits: Limits
    ) -> None:
        self.scheduler = scheduler
        self._upstream = upstream
        self._prober = prober
        self._limits = limits
        self._bounds = UserBounds(queue=limits.queue_per_user, slot_share=limits.user_slot_share)
        # Whose slot each open response holds, so `finish` releases it for them.
        self._holders: dict[UpstreamResponse, str] = {}

    def wait_budget(self, priority: Priority) -> float:
        if priority is Priority.COMPLETION:
            return self._limits.queue_wait_completion
        return self._limits.queue_wait_chat

    async def open(self, job: Job, trace: Trace) -> UpstreamResponse:
        """A response from some backend, with its slot held until `finish`."""
        excluded: list[Backend] = []
        last_error: GatewayError | None = None
        user = trace.user
        for _ in range(self._limits.max_attempts):
            backend = await self._acquire(job, trace, excluded)
            try:
                response = await self._send(backend, job, trace)
            except UpstreamConnectError as exc:
                self._prober.eject(backend, exc.message)
                excluded.append(backend)
                last_error = exc
            except UpstreamDisconnected as exc:
                # Often a pooled keep-alive connection the backend had just
                # closed; one more try may go to the same backend.
                last_error = exc
            except BaseException:
                self.scheduler.release(backend, user)
                raise
            else:
                if response.status != 503:
                    self._holders[response] = user
                    return response
                # Ollama's own queue is full: another backend may have room.
                response.close()
                excluded.append(backend)
                last_error = NoCapacity("backend busy", retry_after=1)
            self.scheduler.release(backend, user)
        assert last_error is not None
        raise last_error

    def finish(self, response: UpstreamResponse, error: BaseException | None = None) -> None:
        """Close the response and free its slot; eject the backend if it broke.

        Idempotent: cleanup paths may overlap (a task and its parent both in
        `finally`), and a slot must be given back exactly once.
        """
        user = self._holders.pop(response, "")
        if response.closed:
            return
        response.close()
        if isinstance(error, UpstreamDisconnected):
            self._prober.eject(response.backend, error.message)
        self.scheduler.release(response.backend, user)

    async def _acquire(self, job: Job, trace: Trace, excluded: list[Backend]) -> Backend:
        trace.stage = Stage.QUEUED
        waited_from = time.perf_counter()
        try:
            return await self.scheduler.acquire(
                job.model,
                priority=job.priority,
                wait=self.wait_budget(job.priority),
                exclude=excluded,
                user=trace.user,
                bounds=self._bounds,
            )
        finally:
            trace.queue_wait += time.perf_counter() - waited_from

    async def _send(self, backend: Backend, job: Job, trace: Trace) -> UpstreamResponse:
        trace.attempts += 1
        trace.backend = backend.url
        trace.stage = Stage.PREFILL
        trace.upstream_sent = time.perf_counter()
        response = await self._upstream.post(backend, job.path, job.body)
        trace.upstream_first_byte = time.perf_counter()
        return response
