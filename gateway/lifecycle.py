"""How the owners of async resources open and close them: `async with`.

Each task, session and connection of a process has one owner, opened by the
lifespan and closed there, so nothing outlives the `async with` that started it
and nothing is left pending at shutdown.

    ClosedOnExit    `async with obj:` awaits `obj.close()` on the way out
    BackgroundLoop  runs one task while it is open; the task is cancelled and
                    awaited when it closes (revocation refresh, lease renewal)
    SessionLoop     a BackgroundLoop with an aiohttp session (JWKS refresh, probes)
    in_background   a coroutine as a task for the length of an `async with`
    every           a step every `interval` seconds: the body of many loops
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Self

import aiohttp


class ClosedOnExit(ABC):
    """Mixin of an object whose `close()` ends it: `async with` returns the object
    and awaits `close()` on the way out, however the block is left."""

    @abstractmethod
    async def close(self) -> None:
        """Release what the object owns."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class BackgroundLoop:
    """Base of an object that runs one task, `_loop`, while it is open.

    `async with` awaits `_open` (for instance a first read, so that the first
    request already sees its result), then starts the task. On the way out the
    task is cancelled and awaited, and then `_close` runs.
    """

    def __init__(self, task_name: str) -> None:
        self._task_name = task_name
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        """The task's work, which runs until it is cancelled; subclasses write it."""
        raise NotImplementedError

    async def _open(self) -> None:
        """Runs before the task starts; nothing by default."""

    async def _close(self) -> None:
        """Runs after the task has ended; nothing by default."""

    async def __aenter__(self) -> Self:
        await self._open()
        self._task = asyncio.create_task(self._loop(), name=self._task_name)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        task, self._task = self._task, None
        if task is not None:
            await _cancel_and_wait(task)
        await self._close()


class SessionLoop(BackgroundLoop):
    """A `BackgroundLoop` that speaks HTTP: it owns an aiohttp session whose
    requests time out after `timeout` seconds in total. The session opens before
    a subclass's `_open` does its first request and closes after the task ends."""

    def __init__(self, task_name: str, timeout: float) -> None:
        super().__init__(task_name)
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session; `RuntimeError` outside `async with`."""
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__} is not open: use `async with`")
        return self._session

    async def _open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))

    async def _close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


@contextlib.asynccontextmanager
async def in_background(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run `work` as a task named `name` while the block runs; cancel and await it after."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        await _cancel_and_wait(task)


async def every(interval: float, step: Callable[[], Awaitable[object]]) -> None:
    """Await `step()` every `interval` seconds, the first time one interval from now,
    until cancelled."""
    while True:
        await asyncio.sleep(interval)
        await step()


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    task.cancel()
    # The task's own CancelledError is the expected end, not an error of ours.
    with contextlib.suppress(asyncio.CancelledError):
        await task
