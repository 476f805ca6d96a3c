"""Keeping children up: the restart decision as plain data, then the supervisor on
real (tiny) processes."""

from __future__ import annotations

import io
import sys
import time

import pytest

from workers.process import Child, ChildFailed
from workers.supervisor import GiveUp, Restart, RestartPolicy, Supervisor, describe_exit, next_step

POLICY = RestartPolicy(first_delay=0.5, max_delay=4.0, max_restarts=5, window=60.0)


def test_the_first_exit_is_restarted_after_the_first_delay() -> None:
    assert next_step(POLICY, [100.0], now=100.0) == Restart(after=0.5)


def test_the_delay_doubles_with_each_recent_exit_up_to_the_cap() -> None:
    exits: list[float] = []
    delays = []
    for now in (0.0, 1.0, 2.0, 3.0, 4.0):
        exits.append(now)
        step = next_step(POLICY, exits, now)
        assert isinstance(step, Restart)
        delays.append(step.after)
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_too_many_exits_within_the_window_give_up() -> None:
    exits = [float(t) for t in range(6)]
    step = next_step(POLICY, exits, now=5.0)
    assert isinstance(step, GiveUp) and "6 times within 60 s" in step.reason


def test_exits_older_than_the_window_are_forgiven() -> None:
    # Five crashes long ago, then a day up: the next exit starts the back-off over.
    exits = [0.0, 1.0, 2.0, 3.0, 4.0, 90_000.0]
    assert next_step(POLICY, exits, now=90_000.0) == Restart(after=0.5)


def test_no_restarts_allowed_gives_up_at_the_first_exit() -> None:
    step = next_step(RestartPolicy(max_restarts=0), [7.0], now=7.0)
    assert isinstance(step, GiveUp) and "restarting is off" in step.reason


def test_exit_codes_are_described_with_their_signal() -> None:
    assert describe_exit(-9) == "was killed by SIGKILL (exit code -9)"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(0) == "exited with code 0"


CRASHING = [sys.executable, "-c", "raise SystemExit(3)"]
SLEEPING = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_crashing_child_is_restarted_then_given_up_on_by_name() -> None:
    out = io.StringIO()
    policy = RestartPolicy(first_delay=0.01, max_delay=0.02, max_restarts=2, window=60.0)
    with Supervisor(policy, out=out) as supervisor:
        supervisor.add(Child.start("flaky", CRASHING), restart=CRASHING)
        deadline = time.monotonic() + 20
        with pytest.raises(ChildFailed) as info:
            while time.monotonic() < deadline:
                supervisor.check()
                time.sleep(0.01)
    assert "flaky exited with code 3" in str(info.value)
    assert "3 times within 60 s" in str(info.value)
    assert out.getvalue().count("flaky exited with code 3; restarting it in") == 2


def test_a_child_without_a_restart_command_is_given_up_on_at_once() -> None:
    with Supervisor(POLICY, out=io.StringIO()) as supervisor:
        child = supervisor.add(Child.start("once", CRASHING), restart=None)
        child.process.wait(10)
        with pytest.raises(
            ChildFailed, match=r"once exited with code 3; giving up: it cannot be restarted"
        ):
            supervisor.check()


def test_a_child_restarted_is_the_one_stopped_on_leaving() -> None:
    with Supervisor(POLICY, out=io.StringIO()) as supervisor:
        first = supervisor.add(Child.start("sleeper", SLEEPING), restart=SLEEPING)
        first.kill()
        supervisor.check()  # noticed: restart due in 0.5 s
        deadline = time.monotonic() + 10
        while (current := supervisor.child("sleeper")) is first:
            assert time.monotonic() < deadline, "never restarted"
            supervisor.check()
            time.sleep(0.05)
        assert current.alive()
    assert not current.alive()


def test_a_child_gone_with_the_stop_signal_is_no_failure() -> None:
    # Ctrl-C reaches the whole process group: a child may exit on it just
    # before the supervisor's own handler records the stop.
    answers = iter([False, True])
    with Supervisor(RestartPolicy(max_restarts=0), out=io.StringIO()) as supervisor:
        child = supervisor.add(Child.start("quick", CRASHING), restart=CRASHING)
        child.process.wait(10)
        supervisor.watch(lambda: next(answers), interval=0)
