"""No GPU time on repeated work: the completion cache and typing-through.

The cache holds finished completions of deterministic requests (temperature 0
or a fixed seed), keyed by everything that changes the output: model, prompt,
suffix and the generation options. It lives in the shared store: in process
memory, bounded by `waste.cache_bytes` and swept of expired entries every
`waste.sweep_interval` seconds, or in Redis with a TTL, shared by every instance.

Typing-through: a developer who types the first characters of the completion
they were just shown sends a new request whose prompt is the old one plus
those characters. The rest of that completion is still the model's best
guess, so it is answered at once from memory, without the backend. Entries are
per group (one editor), kept briefly, and match only when the suffix and the
generation context are unchanged. The memory is bounded in groups, entries per
group and bytes (`waste.typing_bytes`), and swept on the same timer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from gateway.settings import WasteSettings
from gateway.store import Store, StoreError

log = logging.getLogger("ghostgate.cache")

TYPING_TTL = 120.0
TYPING_PER_GROUP = 4
TYPING_GROUPS = 10_000
# Bookkeeping beyond the strings: an entry's records and list slot; a group's
# dict node and list.
SHOWN_OVERHEAD = 256
GROUP_OVERHEAD = 256
# Cache entries a sweep removes between two yields to the event loop (a few ms).
SWEEP_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Completed:
    """A finished completion, as the client saw it."""

    text: str
    done_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Completed | None:
        try:
            data = json.loads(raw)
            return cls(
                str(data["text"]),
                str(data["done_reason"]),
                int(data["prompt_tokens"]),
                int(data["completion_tokens"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def deterministic(options: Mapping[str, Any]) -> bool:
    """Whether the same request gives the same text (so a cached answer is the answer)."""
    temperature, seed = options.get("temperature"), options.get("seed")
    greedy = isinstance(temperature, int | float) and not isinstance(temperature, bool)
    return (greedy and temperature == 0) or (isinstance(seed, int) and not isinstance(seed, bool))


def fingerprint(*parts: object) -> str:
    """A stable digest of JSON-able parts (the cache key, the typing context)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


@runtime_checkable
class LocalCache(Protocol):
    """The part of a store's cache held in this process: the embedded store's
    `cache` (gateway/store/lru.py), also a Redis store's fallback's."""

    size: int
    evictions: int
    expired: int

    def __len__(self) -> int: ...

    def resize(self, max_bytes: int) -> None: ...

    def sweep(self, limit: int | None = None) -> int: ...


def local_cache(store: object) -> LocalCache | None:
    """The cache `store` keeps in this process: an embedded store's own, or the
    local fallback's (`local`) of a store on Redis; None for any other store."""
    for candidate in (store, getattr(store, "local", None)):
        cache = getattr(candidate, "cache", None)
        if isinstance(cache, LocalCache):
            return cache
    return None


@dataclass(frozen=True, slots=True)
class MemoryUsage:
    """What one of the memories holds now, and what its bounds and sweeps removed."""

    entries: int
    size_bytes: int
    evictions: int
    expired: int


@dataclass(frozen=True, slots=True)
class _Shown:
    context: str
    prompt: str
    suffix: str
    completed: Completed
    at: float
    cost: int


def _shown_cost(context: str, prompt: str, suffix: str, text: str) -> int:
    # getsizeof is O(1) and counts what a str really holds (1, 2 or 4 bytes a
    # character), unlike len(); encoding a prompt on the hot path would cost more.
    return SHOWN_OVERHEAD + sum(map(sys.getsizeof, (context, prompt, suffix, text)))


def _group_cost(group: str) -> int:
    return GROUP_OVERHEAD + sys.getsizeof(group)


class TypingMemory:
    """What each group was last shown, bounded three ways: `max_groups` groups,
    `per_group` entries each (the oldest out), and `max_bytes` in all. Past a
    group or byte bound the least recently used group goes first (a read or a
    write uses a group), so a flood of new groups cannot push out an editor that
    is typing. `sweep` removes expired entries without a read: O(groups +
    expired), with groups at most `max_groups`, since a group's entries are in
    the order they were shown and only its oldest need be looked at."""

    def __init__(
        self,
        max_bytes: int,
        *,
        ttl: float = TYPING_TTL,
        max_groups: int = TYPING_GROUPS,
        per_group: int = TYPING_PER_GROUP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.max_groups = max_groups
        self.per_group = per_group
        self._clock = clock
        self._groups: OrderedDict[str, list[_Shown]] = OrderedDict()
        self.size = 0
        self.entries = 0
        self.evictions = 0  # entries of groups pushed out by the group or byte bound
        self.expired = 0  # entries removed by `sweep`

    @property
    def usage(self) -> MemoryUsage:
        return MemoryUsage(self.entries, self.size, self.evictions, self.expired)

    def __len__(self) -> int:
        return len(self._groups)

    def add(self, group: str, context: str, prompt: str, suffix: str, completed: Completed) -> None:
        cost = _shown_cost(context, prompt, suffix, completed.text)
        if cost + _group_cost(group) > self.max_bytes:
            return  # larger than the whole bound: not kept (it would flush every group)
        entries = self._groups.get(group)
        if entries is None:
            entries = self._groups[group] = []
            self.size += _group_cost(group)
        else:
            self._groups.move_to_end(group)
        entries.append(_Shown(context, prompt, suffix, completed, self._clock(), cost))
        self.size += cost
        self.entries += 1
        if len(entries) > self.per_group:
            self._release(entries.pop(0))
        while self.size > self.max_bytes or len(self._groups) > self.max_groups:
            oldest = next(iter(self._groups))
            if oldest != group:
                self.evictions += self._drop_group(oldest)
            elif len(entries) > 1:  # only this group is left: its own oldest go
                self._release(entries.pop(0))
                self.evictions += 1
            else:
                break

    def recent(self, group: str) -> list[_Shown]:
        """The group's entries not yet expired, oldest first; the group counts as used."""
        entries = self._groups.get(group)
        if not entries:
            return []
        self._groups.move_to_end(group)
        now = self._clock()
        return [shown for shown in entries if now - shown.at <= self.ttl]

    def sweep(self) -> int:
        """Remove every expired entry, read or not; how many went."""
        now, removed, emptied = self._clock(), 0, []
        for group, entries in self._groups.items():
            expired = 0
            while expired < len(entries) and now - entries[expired].at > self.ttl:
                expired += 1
            if expired:
                for shown in entries[:expired]:
                    self._release(shown)
                del entries[:expired]
                removed += expired
                if not entries:
                    emptied.append(group)
        for group in emptied:
            self._drop_group(group)
        self.expired += removed
        return removed

    def _release(self, shown: _Shown) -> None:
        self.size -= shown.cost
        self.entries -= 1

    def _drop_group(self, group: str) -> int:
        entries = self._groups.pop(group)
        for shown in entries:
            self._release(shown)
        self.size -= _group_cost(group)
        return len(entries)


class CompletionMemory:
    """The cache (in the store) and the per-group typing-through memory (local)."""

    def __init__(
        self, store: Store, waste: WasteSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl = waste.cache_ttl
        self.sweep_interval = waste.sweep_interval
        self.typing = TypingMemory(waste.typing_bytes, clock=clock)
        # The part of the cache that lives in this process (all of it without
        # Redis, the fallback with it) is bounded and swept here; Redis keys
        # carry their own TTL.
        self._local = local_cache(store)
        if self._local is not None:
            self._local.resize(waste.cache_bytes)

    @property
    def typing_usage(self) -> MemoryUsage:
        return self.typing.usage

    @property
    def cache_usage(self) -> MemoryUsage | None:
        """The in-process cache's figures; None for a store that keeps none."""
        lru = self._local
        if lru is None:
            return None
        return MemoryUsage(len(lru), lru.size, lru.evictions, lru.expired)

    async def sweep(self) -> int:
        """Remove expired typing-through and cache entries; the region runs it every
        `waste.sweep_interval` seconds (Services.running)."""
        removed = self.typing.sweep()
        while self._local is not None:
            batch = self._local.sweep(SWEEP_BATCH)
            removed += batch
            if batch < SWEEP_BATCH:
                break
            await asyncio.sleep(0)  # requests run between batches: no long stall
        return removed

    async def cached(self, key: str) -> Completed | None:
        try:
            raw = await self._store.cache_get("completion:" + key)
        except StoreError as exc:
            log.warning("cache read failed", extra={"error": str(exc)})
            return None
        return Completed.decode(raw) if raw else None

    async def store(self, key: str, completed: Completed) -> None:
        try:
            await self._store.cache_set("completion:" + key, completed.encode(), self._ttl)
        except StoreError as exc:
            log.warning("cache write failed", extra={"error": str(exc)})

    def remember(
        self, group: str, context: str, prompt: str, suffix: str, completed: Completed
    ) -> None:
        """What `group` was just shown, for its next request."""
        self.typing.add(group, context, prompt, suffix, completed)

    def typed_through(self, group: str, context: str, prompt: str, suffix: str) -> Completed | None:
        """The rest of a completion `group` was shown, if `prompt` typed into it."""
        for shown in reversed(self.typing.recent(group)):
            if shown.context != context or shown.suffix != suffix:
                continue
            if not prompt.startswith(shown.prompt):
                continue
            typed = prompt[len(shown.prompt) :]
            text = shown.completed.text
            if typed and len(text) > len(typed) and text.startswith(typed):
                return Completed(
                    text[len(typed) :], shown.completed.done_reason, len(prompt) // 4, 0
                )
        return None

    def __repr__(self) -> str:
        return (
            f"<CompletionMemory groups={len(self.typing)} bytes={self.typing.size} "
            f"ttl={self._ttl:g}s>"
        )
