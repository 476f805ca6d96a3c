"""An LRU of bytes bounded in bytes, with a TTL per entry: the embedded completion cache.

Expired entries go at a read, and also at `sweep`, which the region runs on a
timer so that entries nobody reads again do not hold memory until pushed out.
A sweep costs O(expired) (about 3 us an entry): a heap orders the entries by
expiry, and a caller may sweep in batches to let other work run between them. The heap keeps a
record per `set`, so one for a value replaced or evicted stays until its time;
once the heap holds twice the live entries it is rebuilt from them, which
bounds it and costs O(1) per `set` amortized.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# Bookkeeping per entry, so a flood of tiny values is bounded too: the dict's
# node, the (value, expiry) tuple, the objects' headers and the heap's records.
ENTRY_OVERHEAD = 256
HEAP_SLACK = 1024  # stale heap records tolerated before a rebuild, whatever the size


class ByteLRU:
    """Least recently used entries go first once keys plus values pass `max_bytes`."""

    def __init__(
        self, max_bytes: int = DEFAULT_MAX_BYTES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._expiry: list[tuple[float, str]] = []  # a heap: (expires, key)
        self.size = 0
        self.evictions = 0  # pushed out by the byte bound
        self.expired = 0  # removed by `sweep`

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` for `ttl` seconds; one larger than the whole bound is not kept."""
        self._drop(key)
        cost = _cost(key, value)
        if cost > self.max_bytes or ttl <= 0:
            return
        expires = self._clock() + ttl
        self._entries[key] = (value, expires)
        self.size += cost
        heapq.heappush(self._expiry, (expires, key))
        if len(self._expiry) > 2 * len(self._entries) + HEAP_SLACK:
            self._expiry = [(exp, k) for k, (_, exp) in self._entries.items()]
            heapq.heapify(self._expiry)
        self._evict()

    def resize(self, max_bytes: int) -> None:
        """Bound the cache to `max_bytes` from now on (least recently used out if over)."""
        self.max_bytes = max_bytes
        self._evict()

    def sweep(self, limit: int | None = None) -> int:
        """Remove entries past their TTL, read or not, `limit` at most; how many went."""
        now, heap, removed = self._clock(), self._expiry, 0
        while heap and heap[0][0] <= now and (limit is None or removed < limit):
            expires, key = heapq.heappop(heap)
            entry = self._entries.get(key)
            # Another record's entry (the key was set again) is not this one's to drop.
            if entry is not None and entry[1] == expires:
                self._drop(key)
                removed += 1
        self.expired += removed
        return removed

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ByteLRU(entries={len(self._entries)}, size={self.size}/{self.max_bytes})"

    def _evict(self) -> None:
        while self.size > self.max_bytes and self._entries:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.size -= _cost(key, entry[0])


def _cost(key: str, value: bytes) -> int:
    return len(key.encode()) + len(value) + ENTRY_OVERHEAD
