"""Timeouts on silence rather than on a whole operation: one timer per stream.

`IdleTimeout` ends a relay whose upstream went silent; `SendDeadline` ends a
response whose client stopped reading (a send blocked too long).

A relay that guards every chunk with `asyncio.timeout(...)` creates, schedules
and cancels a timer per chunk; under 200 streams of 20 tokens that was ~5% of
the router's CPU. `IdleTimeout` schedules one timer for the stream and `touch()`
only stores the time; when the timer fires it looks at the last touch and
either sleeps again until the new deadline or cancels the task, which leaves
the `async with` as `TimeoutError`, exactly as `asyncio.timeout` does
(including `Task.uncancel`, so a cancel from elsewhere stays a cancel).
"""

from __future__ import annotations

import asyncio


class _TaskTimer:
    """What both timers share: one timer handle that, once it has fired, cancels
    the task running the block; `__aexit__` turns that cancellation into
    `_expired()`, the way `asyncio.timeout` turns its own into TimeoutError."""

    __slots__ = ("_fired", "_handle", "_loop", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False

    def _expired(self) -> TimeoutError:
        """The exception the block ends with when the timer fired."""
        raise NotImplementedError

    def _bind_task(self) -> None:
        self._task = asyncio.current_task()
        if self._task is None:
            raise RuntimeError(f"{type(self).__name__} must be used inside a task")

    def _fire(self) -> None:
        self._fired = True
        if self._task is not None:
            self._task.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        self._release(exc_type, exc)

    def _release(self, exc_type: type[BaseException] | None, exc: BaseException | None) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # Unbound: a send after the block (an error answer) arms no timer.
        task, self._task = self._task, None
        if (
            self._fired
            and exc_type is asyncio.CancelledError
            and task is not None
            and task.uncancel() == 0
        ):
            raise self._expired() from exc


class IdleTimeout(_TaskTimer):
    """`async with IdleTimeout(30) as idle:` ... `idle.touch()` on each sign of life.

    Raises TimeoutError out of the block once `seconds` pass with no touch."""

    __slots__ = ("_last",)

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self._last = self._loop.time()

    def touch(self) -> None:
        self._last = self._loop.time()

    async def __aenter__(self) -> IdleTimeout:
        self._bind_task()
        self._last = self._loop.time()
        self._handle = self._loop.call_at(self._last + self._seconds, self._check)
        return self

    def _expired(self) -> TimeoutError:
        return TimeoutError(f"nothing for {self._seconds:g} s")

    def _check(self) -> None:
        deadline = self._last + self._seconds
        if self._loop.time() < deadline:
            self._handle = self._loop.call_at(deadline, self._check)
            return
        self._handle = None
        self._fire()


class SlowReader(TimeoutError):
    """One send stayed blocked for the whole send timeout: the client stopped reading."""


class SendDeadline(_TaskTimer):
    """`with SendDeadline(30) as deadline:` ... `deadline.sending()` before each
    send and `deadline.sent()` after it.

    Raises `SlowReader` out of the block when one send stays blocked for
    `seconds`; time spent between sends (waiting for a backend's next token)
    never counts. One timer per block, re-armed at most once per `seconds`:
    a send costs two stores and a clock read.
    """

    __slots__ = ("_since",)

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self._since: float | None = None

    def sending(self) -> None:
        self._since = now = self._loop.time()
        if self._handle is None and self._task is not None:
            self._handle = self._loop.call_at(now + self._seconds, self._check)

    def sent(self) -> None:
        self._since = None

    # Synchronous: it is entered once per request, and needs no await.
    def __enter__(self) -> SendDeadline:
        self._bind_task()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self._release(exc_type, exc)

    def _expired(self) -> TimeoutError:
        return SlowReader(f"client read nothing for {self._seconds:g} s")

    def _check(self) -> None:
        self._handle = None
        since = self._since
        if since is None:
            return  # not sending: the next send arms the timer again
        deadline = since + self._seconds
        if self._loop.time() < deadline:
            self._handle = self._loop.call_at(deadline, self._check)
            return
        self._fire()
