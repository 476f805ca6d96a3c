"""Typing-through memory and the in-process completion cache: bounded in bytes,
least recently used out first, and swept of expired entries without a read."""

from __future__ import annotations

import asyncio

import pytest

from gateway.completion.cache import (
    GROUP_OVERHEAD,
    SHOWN_OVERHEAD,
    SWEEP_BATCH,
    TYPING_GROUPS,
    TYPING_PER_GROUP,
    TYPING_TTL,
    Completed,
    CompletionMemory,
    TypingMemory,
    local_cache,
)
from gateway.metrics import Metrics
from gateway.services import Services
from gateway.settings import GatewaySettings, MiB, WasteSettings
from gateway.store.embedded import EmbeddedStore
from gateway.store.redis_store import RedisStore
from gateway.store.resilient import ResilientStore

pytestmark = pytest.mark.anyio

CONTEXT = "ctx"
BIG = "x" * 100_000  # a large completion: 100 kB


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shown(text: str = BIG) -> Completed:
    return Completed(text, "stop")


def test_flood_of_groups_never_passes_the_byte_bound_and_a_recent_group_survives() -> None:
    bound = 2 * MiB
    memory = TypingMemory(bound)
    memory.add("editor", CONTEXT, "def f(", "", shown("return 1" + BIG))
    for n in range(500):  # 50 MB of distinct groups with large completions
        memory.add(f"flood-{n}", CONTEXT, f"prompt {n}", "", shown())
        assert memory.size <= bound
        if n % 5 == 0:  # the editor keeps typing: its group stays in use
            assert memory.recent("editor")
    assert memory.size <= bound
    assert memory.evictions > 0
    assert len(memory) < 500  # most of the flood went
    assert [s.prompt for s in memory.recent("editor")] == ["def f("]


def test_memory_typed_through_still_answers_the_editor_after_a_flood() -> None:
    memory = CompletionMemory(EmbeddedStore(), WasteSettings(typing_bytes=1 * MiB))
    memory.remember("editor", CONTEXT, "def f(", "", shown("x): return x" + BIG))
    for n in range(100):
        memory.remember(f"flood-{n}", CONTEXT, f"p{n}", "", shown())
        assert memory.typed_through("editor", CONTEXT, "def f(x", "") is not None
    assert memory.typing_usage.size_bytes <= 1 * MiB


def test_count_bounds_are_kept() -> None:
    memory = TypingMemory(1024 * MiB)
    for n in range(TYPING_PER_GROUP + 3):
        memory.add("g", CONTEXT, f"p{n}", "", shown("t"))
    assert [s.prompt for s in memory.recent("g")] == [
        f"p{n}" for n in range(3, TYPING_PER_GROUP + 3)
    ]
    for n in range(TYPING_GROUPS + 10):
        memory.add(f"g{n}", CONTEXT, "p", "", shown("t"))
    assert len(memory) == TYPING_GROUPS
    assert memory.entries == TYPING_GROUPS


def test_size_is_what_is_held_and_an_oversized_entry_is_not_kept() -> None:
    memory = TypingMemory(64 * 1024)
    memory.add("g", CONTEXT, "p", "", shown("t"))
    assert SHOWN_OVERHEAD + GROUP_OVERHEAD < memory.size < 2 * (SHOWN_OVERHEAD + GROUP_OVERHEAD)
    memory.add("g", CONTEXT, "p", "", shown("y" * 100 * 1024))  # alone over the bound
    assert memory.entries == 1 and [s.completed.text for s in memory.recent("g")] == ["t"]
    # Within one group the oldest go first; the newest always stays.
    for n in range(3):
        memory.add("g", CONTEXT, f"q{n}", "", shown("z" * 30 * 1024))
        assert memory.size <= memory.max_bytes
    assert memory.recent("g")[-1].prompt == "q2"


def test_sweep_removes_expired_typing_entries_without_a_read() -> None:
    clock = Clock()
    memory = TypingMemory(8 * MiB, clock=clock)
    memory.add("old", CONTEXT, "a", "", shown("t"))
    memory.add("both", CONTEXT, "b", "", shown("t"))
    clock.now += TYPING_TTL / 2
    memory.add("both", CONTEXT, "c", "", shown("t"))
    memory.add("new", CONTEXT, "d", "", shown("t"))
    clock.now += TYPING_TTL / 2 + 1  # "old" and the first of "both" expired
    assert memory.sweep() == 2
    assert len(memory) == 2 and memory.entries == 2 and memory.expired == 2
    assert [s.prompt for s in memory.recent("both")] == ["c"]
    clock.now += TYPING_TTL
    assert memory.sweep() == 2
    assert len(memory) == 0 and memory.size == 0 and memory.entries == 0


async def test_sweep_removes_expired_cache_entries_without_a_read() -> None:
    clock = Clock()
    store = EmbeddedStore(monotonic=clock)
    memory = CompletionMemory(store, WasteSettings(), clock=clock)
    await memory.store("k1", shown("t"))  # waste.cache_ttl: 600 s
    await store.cache_set("group:g", b"instance", 120)
    memory.remember("g", CONTEXT, "p", "", shown("t"))
    assert memory.cache_usage is not None and memory.cache_usage.entries == 2
    clock.now += 121
    assert await memory.sweep() == 2  # the group key and the typing entry
    clock.now += 600
    assert await memory.sweep() == 1
    usage = memory.cache_usage
    assert usage is not None and (usage.entries, usage.size_bytes, usage.expired) == (0, 0, 2)
    assert memory.typing_usage.expired == 1


def test_the_in_process_cache_is_bounded_by_the_setting() -> None:
    embedded = EmbeddedStore()
    CompletionMemory(embedded, WasteSettings(cache_bytes=1 * MiB))
    assert embedded.cache.max_bytes == 1 * MiB
    fallback = EmbeddedStore()
    on_redis = ResilientStore(RedisStore("redis://127.0.0.1:1/0"), fallback)
    CompletionMemory(on_redis, WasteSettings(cache_bytes=2 * MiB))
    assert local_cache(on_redis) is fallback.cache and fallback.cache.max_bytes == 2 * MiB


async def test_metrics_read_the_memories_at_scrape_time() -> None:
    clock = Clock()
    memory = CompletionMemory(EmbeddedStore(monotonic=clock), WasteSettings(), clock=clock)
    metrics = Metrics("r")
    metrics.watch_memory(memory)
    memory.remember("g", CONTEXT, "p", "", shown("t"))
    await memory.store("k", shown("t"))
    text = metrics.exposition().decode()
    assert "ghostgate_typing_memory_entries 1.0" in text
    assert "ghostgate_completion_cache_entries 1.0" in text
    assert f"ghostgate_typing_memory_bytes {float(memory.typing_usage.size_bytes)}" in text
    clock.now += 10_000
    await memory.sweep()
    text = metrics.exposition().decode()
    assert 'ghostgate_memory_expired_total{kind="typing"} 1.0' in text
    assert 'ghostgate_memory_expired_total{kind="cache"} 1.0' in text
    assert "ghostgate_completion_cache_bytes 0.0" in text


async def test_the_region_sweeps_on_its_timer() -> None:
    services = Services.build(GatewaySettings(waste=WasteSettings(sweep_interval=0.01)))
    services.memory.typing.ttl = 0.0  # everything expires at once
    services.memory.remember("g", CONTEXT, "p", "", shown("t"))
    async with services._sweeping():
        for _ in range(100):
            if services.memory.typing_usage.entries == 0:
                break
            await asyncio.sleep(0.01)
    assert services.memory.typing_usage.entries == 0
    assert 'ghostgate_memory_expired_total{kind="typing"} 1.0' in (
        services.metrics.exposition().decode()
    )


async def test_a_large_sweep_yields_between_batches() -> None:
    clock = Clock()
    store = EmbeddedStore(monotonic=clock)
    memory = CompletionMemory(store, WasteSettings(), clock=clock)
    for n in range(2 * SWEEP_BATCH + 1):
        await store.cache_set(f"k{n}", b"v", 1)
    clock.now += 2
    ran: list[int] = []

    async def meanwhile() -> None:
        ran.append(len(store.cache))

    other = asyncio.create_task(meanwhile())
    assert await memory.sweep() == 2 * SWEEP_BATCH + 1
    await other
    assert 0 < ran[0] < 2 * SWEEP_BATCH + 1  # it ran while the sweep was under way
