"""IdleTimeout: a deadline that moves with every sign of life."""

from __future__ import annotations

import asyncio

import pytest

from gateway.idle_timeout import IdleTimeout

pytestmark = pytest.mark.anyio


async def test_touches_keep_it_alive_past_its_length() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with IdleTimeout(0.05) as idle:
        for _ in range(6):
            await asyncio.sleep(0.02)
            idle.touch()
    assert loop.time() - started >= 0.12  # twice the timeout, and never fired


async def test_silence_raises_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with IdleTimeout(0.05) as idle:
            await asyncio.sleep(0.03)
            idle.touch()
            await asyncio.sleep(10)
    assert 0.08 <= loop.time() - started < 1  # 0.05 after the last touch


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    async def guarded() -> None:
        async with IdleTimeout(10):
            await asyncio.sleep(10)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_leaves_no_timer_behind() -> None:
    async with IdleTimeout(0.01):
        pass
    await asyncio.sleep(0.03)  # a stale timer would cancel this task now
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]
