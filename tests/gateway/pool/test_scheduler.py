from __future__ import annotations

import asyncio

import pytest

from gateway.errors import ModelNotFound, NoCapacity
from gateway.pool.backends import Backend
from gateway.pool.scheduler import Priority, Scheduler

pytestmark = pytest.mark.anyio


def make(slots: int = 1, queue_size: int = 8, n: int = 1) -> Scheduler:
    backends = [
        Backend(url=f"b{i}", slots=slots, healthy=True, models=frozenset({"m:latest"}))
        for i in range(n)
    ]
    return Scheduler(backends, queue_size=queue_size)


async def test_acquire_takes_a_slot_and_release_gives_it_back() -> None:
    s = make(slots=2)
    b = await s.acquire("m:latest", priority=Priority.COMPLETION, wait=1)
    assert b.inflight == 1 and s.inflight == 1
    s.release(b)
    assert s.inflight == 0


async def test_unknown_model_is_404_and_nothing_is_queued() -> None:
    s = make()
    with pytest.raises(ModelNotFound):
        await s.acquire("nope:latest", priority=Priority.CHAT, wait=1)
    assert s.queued == 0


async def test_waiter_gets_the_released_slot() -> None:
    s = make()
    first = await s.acquire("m:latest", priority=Priority.COMPLETION, wait=1)
    waiting = asyncio.create_task(s.acquire("m:latest", priority=Priority.COMPLETION, wait=5))
    await asyncio.sleep(0)
    assert s.queued == 1
    s.release(first)
    assert await waiting is first
    assert s.queued == 0 and first.inflight == 1


async def test_completions_jump_ahead_of_chat() -> None:
    s = make()
    held = await s.acquire("m:latest", priority=Priority.COMPLETION, wait=1)
    order: list[str] = []

    async def take(name: str, priority: Priority) -> None:
        b = await s.acquire("m:latest", priority=priority, wait=5)
        order.append(name)
        s.release(b)

    tasks = [asyncio.create_task(take("chat", Priority.CHAT))]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take("completion", Priority.COMPLETION)))
    await asyncio.sleep(0)
    assert s.snapshot()["queued_by_priority"] == {"completion": 1, "chat": 1}
    s.release(held)
    await asyncio.gather(*tasks)
    assert order == ["completion", "chat"]


async def test_queue_bound_gives_503_with_retry_after() -> None:
    s = make(queue_size=1)
    await s.acquire("m:latest", priority=Priority.COMPLETION, wait=1)
    waiting = asyncio.create_task(s.acquire("m:latest", priority=Priority.COMPLETION, wait=5))
    await asyncio.sleep(0)
    with pytest.raises(NoCapacity) as info:
        await s.acquire("m:latest", priority=Priority.COMPLETION, wait=5)
    assert info.value.retry_after is not None
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


async def test_wait_timeout_is_503_and_leaves_queue_empty() -> None:
    s = make()
    await s.acquire("m:latest", priority=Priority.COMPLETION, wait=1)
    with pytest.raises(NoCapacity):
        await s.acquire("m:latest", priority=Priority.COMPLETION, wait=0.05)
    assert s.queued == 0


async def test_cancelled_waiter_leaves_queue_and_never_takes_a_slot() -> None:
    s = make()
    held = await s.acquire("m:latest", priority=Priority.COMPLETION, wait=1)
    waiting = asyncio.create_task(s.acquire("m:latest", priority=Priority.COMPLETION, wait=5))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert s.queued == 0
    s.release(held)
    assert s.inflight == 0


async def test_slot_assigned_in_the_same_turn_as_a_cancel_is_returned() -> None:
    s = make()
    held = await s.acquire("m:latest", priority=Priority.COMPLETION, wait=1)
    waiting = asyncio.create_task(s.acquire("m:latest", priority=Priority.COMPLETION, wait=5))
    await asyncio.sleep(0)
    s.release(held)  # hands the slot to the waiter...
    waiting.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(waiting, return_exceptions=True)
    assert s.inflight == 0 and s.queued == 0


async def test_all_backends_down_fails_fast() -> None:
    s = make()
    s.backends[0].healthy = False
    with pytest.raises(NoCapacity):
        await s.acquire("m:latest", priority=Priority.COMPLETION, wait=5)
    assert s.queued == 0


async def test_a_model_served_only_by_a_down_backend_fails_fast_with_budget_left() -> None:
    # Another backend is up (other models): waiting for the down one to heal
    # is the client's to do, on Retry-After, not a queue slot's.
    s = make(n=2)
    s.backends[0].healthy = False
    s.backends[1].models = frozenset({"other:latest"})
    with pytest.raises(NoCapacity) as info:
        await s.acquire("m:latest", priority=Priority.COMPLETION, wait=5)
    assert info.value.retry_after == 2 and s.queued == 0


async def test_only_excluded_backends_left_fails_fast() -> None:
    # The relay's retry after a connect error: the failed backend is excluded.
    s = make()
    with pytest.raises(NoCapacity, match="no healthy backend"):
        await s.acquire("m:latest", priority=Priority.COMPLETION, wait=5, exclude=s.backends)
    assert s.queued == 0
