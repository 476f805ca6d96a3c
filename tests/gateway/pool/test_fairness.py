"""The fair queue's choice (`next_grant`) as a pure function, its cost with many
users, its counters as metrics, and its settings."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Collection, Sequence
from pathlib import Path

import pytest

from gateway import config
from gateway.errors import RateLimited
from gateway.metrics import Metrics
from gateway.pool import backends as backends_module
from gateway.pool.backends import (
    Backend,
    BackendChoice,
    Waiter,
    choose_backend,
    next_grant,
    over_share,
)
from gateway.pool.scheduler import Priority, Scheduler, UserBounds
from gateway.settings import Limits

M, X = "m:latest", "x:latest"


def backend(url: str = "b0", *, slots: int = 4, inflight: int = 0, model: str = M) -> Backend:
    return Backend(url=url, slots=slots, inflight=inflight, healthy=True, models=frozenset({model}))


def waiter(user: str, model: str = M, *, share: float = 0.5) -> Waiter:
    return Waiter(user, model, slot_share=share)


def test_over_share_is_at_or_above_the_share_of_capacity() -> None:
    assert over_share(2, 4, 0.5) and over_share(2, 3, 0.5) and over_share(1, 1, 0.5)
    assert not over_share(1, 4, 0.5) and not over_share(1, 3, 0.5)
    assert not over_share(0, 1, 0.5)
    assert not over_share(9, 4, 1.0)  # 1.0: the rule is off


def test_the_first_user_in_the_ring_gets_their_first_waiter() -> None:
    a1, a2, b1 = waiter("a"), waiter("a"), waiter("b")
    grant = next_grant([{"a": [a1, a2], "b": [b1]}], [backend(inflight=3)], {}, 4, 2)
    assert grant.waiter is a1 and grant.backend is not None and grant.held_back == ()


def test_a_user_over_share_is_passed_over_for_another_waiting_user() -> None:
    a1, b1 = waiter("a"), waiter("b")
    grant = next_grant([{"a": [a1], "b": [b1]}], [backend(inflight=3)], {"a": 2}, 4, 2)
    assert grant.waiter is b1 and grant.held_back == (a1,)


def test_a_user_over_share_alone_gets_the_slot() -> None:
    a1 = waiter("a")
    grant = next_grant([{"a": [a1]}], [backend(inflight=3)], {"a": 3}, 4, 1)
    assert grant.waiter is a1 and grant.held_back == ()


def test_no_slot_idles_when_only_users_over_share_can_use_it() -> None:
    # b waits for a model whose backend is full: holding a back would idle the slot.
    m_free, x_full = backend("m", inflight=3), backend("x", slots=1, inflight=1, model=X)
    a1, b1 = waiter("a"), waiter("b", X)
    grant = next_grant([{"a": [a1], "b": [b1]}], [m_free, x_full], {"a": 2}, 5, 2)
    assert grant.waiter is a1 and grant.backend is m_free


def test_completions_before_chat_and_a_busy_model_blocks_nobody() -> None:
    m_free, x_full = backend("m", inflight=3), backend("x", slots=1, inflight=1, model=X)
    chat = waiter("c")
    ax, am = waiter("a", X), waiter("a")
    grant = next_grant([{"a": [ax, am]}, {"c": [chat]}], [m_free, x_full], {}, 5, 2)
    assert grant.waiter is am  # a's head waits for x; a's next runs, ahead of chat


def test_no_free_slot_decides_without_asking_any_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_choices(monkeypatch)
    rings = [{f"u{i}": [waiter(f"u{i}")] for i in range(100)}]
    assert next_grant(rings, [backend(inflight=4)], {}, 4, 100).waiter is None
    assert calls == [0]


def _count_choices(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]

    def counted(
        backends: Sequence[Backend], model: str, exclude: Collection[Backend] = ()
    ) -> BackendChoice:
        calls[0] += 1
        return choose_backend(backends, model, exclude)

    monkeypatch.setattr(backends_module, "choose_backend", counted)
    return calls


@pytest.mark.anyio
async def test_a_thousand_users_cost_a_constant_per_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each grant asks one backend choice (the first user's), and a dispatch with no
    # slot left asks none: linear in the requests served, not quadratic.
    users = 1000
    s = Scheduler([backend(), backend("x", slots=1, model=X)], queue_size=2 * users)
    bounds = UserBounds(queue=8, slot_share=0.5)
    busy = [await s.acquire(M, priority=Priority.COMPLETION, wait=1, user="z") for _ in range(4)]
    order: list[str] = []

    async def take(user: str) -> None:
        b = await s.acquire(M, priority=Priority.COMPLETION, wait=30, user=user, bounds=bounds)
        order.append(user)
        s.release(b, user)

    tasks = [asyncio.create_task(take(f"u{i}")) for i in range(users)]
    await asyncio.sleep(0)
    assert s.queued == users and s.users_waiting == users
    calls = _count_choices(monkeypatch)
    # A free slot no waiter can use (model x): one choice per model, not per user.
    other = await s.acquire(X, priority=Priority.COMPLETION, wait=1, user="y")
    calls[0] = 0
    s.release(other, "y")
    assert calls == [1]
    calls[0] = 0
    for b in busy:
        s.release(b, "z")
    await asyncio.gather(*tasks)
    assert order == [f"u{i}" for i in range(users)]
    assert calls[0] <= 2 * users


@pytest.mark.anyio
async def test_the_fairness_counters_are_exported() -> None:
    s = Scheduler([backend(slots=2)], queue_size=8)
    metrics = Metrics("r")
    metrics.watch(s)
    bounds = UserBounds(queue=1, slot_share=0.5)
    held = await s.acquire(M, priority=Priority.COMPLETION, wait=1, user="a")
    z = await s.acquire(M, priority=Priority.COMPLETION, wait=1, user="z")

    def wait_for(user: str) -> asyncio.Task[Backend]:
        return asyncio.create_task(
            s.acquire(M, priority=Priority.COMPLETION, wait=5, user=user, bounds=bounds)
        )

    a, b = wait_for("a"), wait_for("b")
    await asyncio.sleep(0)
    with pytest.raises(RateLimited):
        await s.acquire(M, priority=Priority.COMPLETION, wait=5, user="a", bounds=bounds)
    assert "ghostgate_queue_users_waiting 2.0" in metrics.exposition().decode()
    s.release(z, "z")  # a holds 1 of 2 while b waits: b first
    s.release(await b, "b")
    s.release(held, "a")
    s.release(await a, "a")
    text = metrics.exposition().decode()
    assert "ghostgate_queue_share_held_back_total 1.0" in text
    assert "ghostgate_queue_user_refusals_total 1.0" in text
    assert "ghostgate_queue_users_waiting 0.0" in text and s.inflight == 0


def test_the_fairness_settings_load_from_toml_and_flags(tmp_path: Path) -> None:
    assert (Limits().queue_per_user, Limits().user_slot_share) == (8, 0.5)
    toml = tmp_path / "g.toml"
    toml.write_text("[gateway.limits]\nqueue_per_user = 3\nuser_slot_share = 0.25\n")
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    limits = config.load(parser.parse_args(["--config", str(toml)]), environ={}).limits
    assert (limits.queue_per_user, limits.user_slot_share) == (3, 0.25)
    args = parser.parse_args(
        ["--config", str(toml), "--queue-per-user", "0", "--user-slot-share", "1"]
    )
    limits = config.load(args, environ={}).limits
    assert (limits.queue_per_user, limits.user_slot_share) == (0, 1.0)
