from __future__ import annotations

import asyncio

import pytest

from gateway.errors import ModelNotFound, NoCapacity, RateLimited
from gateway.pool.backends import Backend
from gateway.pool.scheduler import Priority, Scheduler, UserBounds

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


# Fairness between users: round robin within a priority, a share of the slots,
# a per-user bound on the queue.

M = "m:latest"


async def hold(s: Scheduler, user: str, n: int) -> list[Backend]:
    return [await s.acquire(M, priority=Priority.COMPLETION, wait=1, user=user) for _ in range(n)]


async def test_round_robin_serves_every_user_before_a_bursts_fifth_request() -> None:
    s = make(slots=4, queue_size=64)
    busy = await hold(s, "z", 4)
    order: list[str] = []

    async def take(name: str) -> None:
        user = name[0]
        b = await s.acquire(M, priority=Priority.COMPLETION, wait=5, user=user)
        order.append(name)
        s.release(b, user)

    tasks = [asyncio.create_task(take(f"a{i}")) for i in range(20)]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(take(f"{u}{i}")) for u in "bc" for i in range(2)]
    await asyncio.sleep(0)
    assert s.queued == 24 and s.snapshot()["users_waiting"] == 3
    for b in busy:
        s.release(b, "z")
    await asyncio.gather(*tasks)
    assert order[:6] == ["a0", "b0", "c0", "a1", "b1", "c1"]
    assert order[6:] == [f"a{i}" for i in range(2, 20)]  # FIFO within one user
    assert s.inflight == 0 and s.snapshot()["max_user_inflight"] == 0


async def test_completions_still_go_before_chat_across_users() -> None:
    s = make()
    (held,) = await hold(s, "z", 1)
    chat = asyncio.create_task(s.acquire(M, priority=Priority.CHAT, wait=5, user="a"))
    await asyncio.sleep(0)
    completion = asyncio.create_task(s.acquire(M, priority=Priority.COMPLETION, wait=5, user="b"))
    await asyncio.sleep(0)
    s.release(held, "z")
    assert await completion is held and not chat.done()
    s.release(held, "b")
    assert await chat is held


async def test_a_user_at_half_the_slots_waits_while_another_user_waits() -> None:
    s = make(slots=4)
    share = UserBounds(slot_share=0.5)
    await hold(s, "a", 2)
    z1, z2 = await hold(s, "z", 2)
    a_next = asyncio.create_task(
        s.acquire(M, priority=Priority.COMPLETION, wait=5, user="a", bounds=share)
    )
    await asyncio.sleep(0)
    b_next = asyncio.create_task(
        s.acquire(M, priority=Priority.COMPLETION, wait=5, user="b", bounds=share)
    )
    await asyncio.sleep(0)
    s.release(z1, "z")  # a is first in the ring but holds 2 of 4: b gets the slot
    await asyncio.sleep(0)
    assert b_next.done() and not a_next.done()
    assert s.share_held_back == 1 and s.snapshot()["users_waiting"] == 1
    s.release(z2, "z")  # nobody else waits: a may go past half
    assert await a_next is z2
    assert s.snapshot()["max_user_inflight"] == 3 and s.share_held_back == 1
    await b_next


async def test_a_user_alone_may_use_every_slot() -> None:
    s = make(slots=4)
    share = UserBounds(slot_share=0.5)
    await hold(s, "a", 3)
    last = await s.acquire(M, priority=Priority.COMPLETION, wait=1, user="a", bounds=share)
    assert last.free == 0 and s.snapshot()["max_user_inflight"] == 4


async def test_a_users_queue_past_its_bound_is_429_and_others_still_queue() -> None:
    s = make(queue_size=8)
    bounds = UserBounds(queue=2)
    await hold(s, "z", 1)

    def wait_for(user: str) -> asyncio.Task[Backend]:
        return asyncio.create_task(
            s.acquire(M, priority=Priority.COMPLETION, wait=5, user=user, bounds=bounds)
        )

    waiting = [wait_for("a"), wait_for("a")]
    await asyncio.sleep(0)
    with pytest.raises(RateLimited) as info:
        await s.acquire(M, priority=Priority.CHAT, wait=5, user="a", bounds=bounds)
    assert info.value.status == 429 and info.value.retry_after is not None
    assert s.user_queue_refusals == 1
    waiting.append(wait_for("b"))
    await asyncio.sleep(0)
    assert s.queued == 3
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert s.queued == 0 and s.snapshot()["users_waiting"] == 0


async def test_cancelled_waiters_of_one_user_leave_the_ring() -> None:
    s = make()
    (held,) = await hold(s, "z", 1)
    a = [
        asyncio.create_task(s.acquire(M, priority=Priority.COMPLETION, wait=5, user="a"))
        for _ in range(3)
    ]
    b = asyncio.create_task(s.acquire(M, priority=Priority.COMPLETION, wait=5, user="b"))
    await asyncio.sleep(0)
    a[1].cancel()
    await asyncio.gather(a[1], return_exceptions=True)
    assert s.queued == 3 and s.snapshot()["users_waiting"] == 2
    a[0].cancel()
    a[2].cancel()
    await asyncio.gather(*a, return_exceptions=True)
    assert s.queued == 1 and s.snapshot()["users_waiting"] == 1
    s.release(held, "z")
    assert await b is held and s.queued == 0


async def test_holdings_follow_take_and_release_exactly_once() -> None:
    s = make(slots=2)
    (b,) = await hold(s, "a", 1)
    waiting = asyncio.create_task(s.acquire(M, priority=Priority.COMPLETION, wait=5, user="a"))
    await asyncio.sleep(0)
    assert waiting.done()  # a free slot: taken at once
    assert s.snapshot()["max_user_inflight"] == 2
    s.release(b, "a")
    s.release(await waiting, "a")
    assert s.snapshot()["max_user_inflight"] == 0 and s.inflight == 0
