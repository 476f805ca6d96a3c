"""The round-robin stream scheduler that replaces Hypercorn's priority tree."""

from __future__ import annotations

import itertools

import pytest
from priority.priority import DeadlockError, DuplicateStreamError, MissingStreamError

from gateway.server.patches.h2_sender import RoundRobin


def take(scheduler: RoundRobin, count: int) -> list[int]:
    return list(itertools.islice(scheduler, count))


def test_streams_with_data_take_turns() -> None:
    rr = RoundRobin()
    for stream_id in (1, 3, 5):
        rr.insert_stream(stream_id)  # active on insert, as in PriorityTree
    assert take(rr, 7) == [1, 3, 5, 1, 3, 5, 1]


def test_blocked_streams_are_skipped_until_unblocked() -> None:
    rr = RoundRobin()
    for stream_id in (1, 3, 5):
        rr.insert_stream(stream_id)
        rr.block(stream_id)
    with pytest.raises(DeadlockError):
        next(rr)
    rr.unblock(3)
    rr.unblock(3)  # twice: still one turn per round
    rr.unblock(5)
    assert take(rr, 4) == [3, 5, 3, 5]
    rr.block(3)
    assert take(rr, 2) == [5, 5]
    rr.unblock(3)
    assert take(rr, 2) == [5, 3]


def test_removed_streams_leave_and_unknown_ones_are_errors() -> None:
    rr = RoundRobin()
    rr.insert_stream(1)
    rr.insert_stream(3)
    rr.remove_stream(1)
    assert take(rr, 2) == [3, 3]
    with pytest.raises(DuplicateStreamError):
        rr.insert_stream(3)
    for call in (rr.block, rr.unblock, rr.remove_stream, rr.reprioritize):
        with pytest.raises(MissingStreamError):
            call(1)
    rr.reprioritize(3, depends_on=0, weight=200)  # weights are ignored
    assert repr(rr) == "<RoundRobin streams=1 ready=1>"
