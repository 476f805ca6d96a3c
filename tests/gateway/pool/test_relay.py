"""`Relay.open` against real loopback backends: what is retried elsewhere, and what is not."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from gateway.errors import RateLimited
from gateway.pool.backends import Backend
from gateway.pool.health import HealthProber
from gateway.pool.relay import Job, Relay
from gateway.pool.scheduler import Priority, Scheduler
from gateway.pool.upstream import Upstream
from gateway.settings import HealthSettings, Limits, Timeouts
from gateway.trace import Trace
from tests.gateway.pool import loopback

pytestmark = pytest.mark.anyio


def healthy(url: str) -> Backend:
    return Backend(url=url, slots=1, healthy=True, models=frozenset({loopback.MODEL}))


async def test_a_backend_that_never_accepts_is_ejected_and_the_next_one_answers() -> None:
    # Nothing reached the stuck backend, so the client has seen nothing yet:
    # this is a refusal that took longer, not a 504.
    timeouts = Timeouts(connect=0.2, read=5.0)
    job = Job(loopback.MODEL, "/api/generate", b'{"model": "m"}', Priority.COMPLETION)
    trace = Trace(request_id="t", route="/api/generate", started=time.perf_counter())
    with loopback.never_accepting() as stuck_url:
        async with loopback.backend() as good_url, Upstream(timeouts, lambda: None) as upstream:
            stuck, good = healthy(stuck_url), healthy(good_url)  # equal: list order picks stuck
            scheduler = Scheduler([stuck, good], queue_size=8)
            prober = HealthProber(scheduler, upstream, HealthSettings())
            relay = Relay(scheduler, upstream, prober, Limits())
            async with asyncio.timeout(5):
                response = await relay.open(job, trace)
                try:
                    lines = (await response.read()).splitlines()
                finally:
                    relay.finish(response)
    assert response.backend is good and json.loads(lines[-1])["done"] is True
    assert trace.attempts == 2
    assert not stuck.healthy and stuck.consecutive_failures == 1
    assert "cannot connect" in stuck.last_error
    assert good.healthy and scheduler.inflight == 0


async def test_the_relay_holds_the_slot_for_the_traces_user_and_bounds_their_queue() -> None:
    # Limits reach the scheduler through the relay: one waiter per user here.
    job = Job(loopback.MODEL, "/api/generate", b'{"model": "m"}', Priority.COMPLETION)

    def trace(user: str) -> Trace:
        return Trace(request_id=user, route="/api/generate", started=time.perf_counter(), user=user)

    async with loopback.backend() as url, Upstream(Timeouts(), lambda: None) as upstream:
        scheduler = Scheduler([healthy(url)], queue_size=8)
        prober = HealthProber(scheduler, upstream, HealthSettings())
        relay = Relay(scheduler, upstream, prober, Limits(queue_per_user=1))
        async with asyncio.timeout(5):
            first = await relay.open(job, trace("a"))
            assert scheduler.snapshot()["max_user_inflight"] == 1
            second = asyncio.create_task(relay.open(job, trace("a")))
            await asyncio.sleep(0.05)
            assert scheduler.queued == 1
            with pytest.raises(RateLimited):
                await relay.open(job, trace("a"))
            await first.read()
            relay.finish(first)
            relay.finish(first)  # idempotent: released once
            response = await second
            await response.read()
            relay.finish(response)
    assert scheduler.inflight == 0 and scheduler.snapshot()["max_user_inflight"] == 0
