"""`Relay.open` against real loopback backends: what is retried elsewhere, and what is not."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

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
