from __future__ import annotations

import asyncio

import pytest

from gateway.completion.supersede import Supersessions, group_for


def test_groups_are_per_user_and_chat_is_never_implicit() -> None:
    a = group_for(None, "alice", "vscode", completion_route=True)
    assert a == group_for(None, "alice", "vscode", completion_route=True)
    assert a != group_for(None, "bob", "vscode", completion_route=True)
    assert a != group_for(None, "alice", "neovim", completion_route=True)
    assert group_for(None, "alice", "vscode", completion_route=False) is None
    assert group_for(None, "alice", "vscode", completion_route=True, implicit=False) is None
    explicit = group_for("tab-1", "alice", "vscode", completion_route=False)
    assert explicit is not None and explicit != group_for("tab-1", "bob", None, False)


@pytest.mark.anyio
async def test_claim_cancels_the_previous_holder_only() -> None:
    live = Supersessions()
    first = live.claim("g", "r1")
    other = live.claim("h", "r2")
    second = live.claim("g", "r3")
    assert first.superseded and not other.superseded and not second.superseded
    live.release(first)  # a late release of the old one keeps the new one
    assert len(live) == 2
    live.release(second)
    live.release(other)
    assert len(live) == 0 and live.superseded_total == 1
    await asyncio.sleep(0)


@pytest.mark.anyio
async def test_remote_cancel_only_hits_older_requests() -> None:
    live = Supersessions()
    ticket = live.claim("g", "r1")
    assert not live.cancel("g", before=ticket.started - 1)
    assert live.cancel("g", before=ticket.started + 1) and ticket.superseded
    assert not live.cancel("missing", before=1e12)
