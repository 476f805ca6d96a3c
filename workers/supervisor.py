"""Keeping the local cluster up: a child that exits is started again, with back-off,
or, when that keeps failing, the supervisor gives up so the cluster stops whole.

A cluster left half up (a region without its worker, a router without its
regions) answers errors that look like bugs elsewhere; better a restart, or a
clear stop naming the component and how it ended.

The decision is a pure function, `next_step`, over the policy and the times the
child exited, so it is tested without processes. `Supervisor` applies it to
real ones; it polls, because the processes are few and a restart can wait
a fraction of a second.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from workers.process import Child, ChildFailed, StopsOnExit


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Restart after `first_delay`, doubling with each recent exit up to `max_delay`;
    give up past `max_restarts` restarts within `window` seconds (0: never restart)."""

    first_delay: float = 0.5
    max_delay: float = 8.0
    max_restarts: int = 5
    window: float = 60.0


@dataclass(frozen=True, slots=True)
class Restart:
    after: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


def next_step(policy: RestartPolicy, exits: Sequence[float], now: float) -> Restart | GiveUp:
    """What to do about a child that exited at the times `exits` (the last one included)."""
    if policy.max_restarts <= 0:
        return GiveUp("restarting is off")
    # Only recent exits count: a worker that crashed twice last week and ran
    # since is as trustworthy as a new one.
    recent = max(1, sum(1 for t in exits if now - t < policy.window))
    if recent > policy.max_restarts:
        return GiveUp(f"it exited {recent} times within {policy.window:g} s")
    return Restart(min(policy.max_delay, policy.first_delay * 2 ** (recent - 1)))


def describe_exit(code: int) -> str:
    """A return code in words; Popen reports death by signal N as -N."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} (exit code {code})"
    return f"exited with code {code}"


@dataclass(eq=False)
class _Supervised:
    child: Child
    restart: Sequence[str] | None  # the argv to start it again; None: it cannot be
    exits: list[float] = field(default_factory=list)
    restart_at: float | None = None


class Supervisor(StopsOnExit):
    """Owns the cluster's children: restarts them, and stops them all on exit.

    Children are stopped last added first, so regions drain before the router
    and the workers they drain onto go.
    """

    def __init__(self, policy: RestartPolicy, *, out: TextIO | None = None) -> None:
        self._policy = policy
        self._out = out  # None: stderr, looked up when written (tests capture it)
        self._supervised: list[_Supervised] = []

    def add(self, child: Child, *, restart: Sequence[str] | None) -> Child:
        """Supervise `child`; `restart` starts it again (same port, so peers still reach it)."""
        self._supervised.append(_Supervised(child, list(restart) if restart else None))
        return child

    def child(self, name: str) -> Child:
        """The current process of the component called `name`."""
        for entry in self._supervised:
            if entry.child.name == name:
                return entry.child
        raise KeyError(name)

    def check(self) -> None:
        """Notice exits, restart what is due; `ChildFailed` when one is given up on."""
        now = time.monotonic()
        for entry in self._supervised:
            if entry.restart_at is not None:
                if now >= entry.restart_at:
                    self._restart(entry, now)
                continue
            code = entry.child.process.poll()
            if code is not None:
                self._exited(entry, code, now)

    def watch(self, stop: Callable[[], bool], interval: float = 0.2) -> None:
        """`check` until `stop()` says a stop was asked for."""
        while not stop():
            try:
                self.check()
            except ChildFailed:
                # Ctrl-C reaches the whole process group: a child may have
                # exited on it a moment before our own handler said so.
                if stop():
                    return
                raise
            time.sleep(interval)

    def stop(self) -> None:
        """Stop every child, the last added first."""
        while self._supervised:
            self._supervised.pop().child.stop()

    def _exited(self, entry: _Supervised, code: int, now: float) -> None:
        # Older exits no longer count (see next_step): keep the list short.
        entry.exits = [t for t in entry.exits if now - t < self._policy.window] + [now]
        name, how = entry.child.name, describe_exit(code)
        step = (
            GiveUp("it cannot be restarted")
            if entry.restart is None
            else next_step(self._policy, entry.exits, now)
        )
        if isinstance(step, GiveUp):
            raise ChildFailed(f"{name} {how}; giving up: {step.reason}{entry.child.log_tail()}")
        self._say(f"ghostgate: {name} {how}; restarting it in {step.after:g} s")
        entry.restart_at = now + step.after

    def _restart(self, entry: _Supervised, now: float) -> None:
        assert entry.restart is not None
        old = entry.child
        entry.restart_at = None
        old.stop()  # reaped already; closes a piped stdout
        try:
            entry.child = Child.start(old.name, entry.restart, log_path=old.log_path)
        except OSError as exc:  # could not even exec: counts as one more exit
            self._say(f"ghostgate: {old.name} could not be started again: {exc}")
            self._exited(entry, 127, now)
            return
        self._say(f"ghostgate: {old.name} restarted (pid {entry.child.pid})")

    def _say(self, line: str) -> None:
        print(line, file=self._out or sys.stderr, flush=True)
