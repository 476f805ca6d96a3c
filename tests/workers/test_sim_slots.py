"""Slots, the bounded queue and model residency, without sockets."""

from __future__ import annotations

import asyncio

import pytest

from workers.sim.errors import ServerBusy
from workers.sim.slots import Admission, Residency, SlotPool, admit

pytestmark = pytest.mark.anyio


def test_admission_decision() -> None:
    assert admit(free_slots=1, waiting=0, max_queue=0) is Admission.RUN
    assert admit(free_slots=0, waiting=0, max_queue=1) is Admission.WAIT
    assert admit(free_slots=0, waiting=1, max_queue=1) is Admission.REJECT
    assert admit(free_slots=0, waiting=0, max_queue=0) is Admission.REJECT


async def test_slots_are_per_model_the_queue_is_shared_and_fifo() -> None:
    pool = SlotPool(parallel=1, max_queue=2)
    await pool.acquire("a")
    await pool.acquire("b")  # another model: its own runner, its own slot
    order: list[str] = []

    async def wait(name: str) -> None:
        await pool.acquire("a")
        order.append(name)

    first = asyncio.create_task(wait("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(wait("second"))
    await asyncio.sleep(0)
    assert (pool.active, pool.queued) == (2, 2)
    with pytest.raises(ServerBusy):
        await pool.acquire("b")  # the queue bound is global
    pool.release("a")
    await first
    assert order == ["first"] and (pool.active, pool.queued) == (2, 1)
    pool.release("a")
    await second
    pool.release("a")
    pool.release("b")
    assert (pool.active, pool.queued) == (0, 0)
    assert "active=0" in repr(pool)


async def test_a_cancelled_waiter_leaves_the_queue_and_never_holds_a_slot() -> None:
    pool = SlotPool(parallel=1, max_queue=4)
    await pool.acquire("a")
    waiter = asyncio.create_task(pool.acquire("a"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.queued == 0
    pool.release("a")
    assert pool.active == 0


async def test_one_load_is_shared_and_keep_alive_expires_it() -> None:
    now = [100.0]
    residency = Residency(clock=lambda: now[0])
    residency.enter("m", 5.0)
    residency.enter("m", 5.0)
    loaded = await asyncio.gather(residency.load("m", 0.01), residency.load("m", 0.01))
    assert sorted(loaded) == [False, True]  # one request paid for the load
    assert residency.loaded() == {"m": 5.0}  # in use: expires keep_alive after the last use
    residency.leave("m", 5.0)
    residency.leave("m", 5.0)
    now[0] += 4.0
    assert residency.loaded() == {"m": pytest.approx(1.0)}
    now[0] += 1.0
    assert residency.loaded() == {}
    assert await residency.load("m", 0.0) is True  # loads again after expiry


async def test_keep_alive_zero_unloads_and_negative_keeps_forever() -> None:
    residency = Residency()
    residency.enter("m", 0.0)
    await residency.load("m", 0.0)
    residency.leave("m", 0.0)
    assert residency.loaded() == {}
    residency.enter("m", -1.0)
    await residency.load("m", 0.0)
    residency.leave("m", -1.0)
    assert residency.loaded() == {"m": float("inf")}
    residency.unload("m")
    assert residency.loaded() == {}
