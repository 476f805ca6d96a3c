"""An LRU of bytes bounded in bytes, with a TTL per entry: the embedded completion cache."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
ENTRY_OVERHEAD = 64  # bookkeeping per entry, so a flood of tiny values is bounded too


class ByteLRU:
    """Least recently used entries go first once keys plus values pass `max_bytes`."""

    def __init__(
        self, max_bytes: int = DEFAULT_MAX_BYTES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self.size = 0

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
        self._entries[key] = (value, self._clock() + ttl)
        self.size += cost
        while self.size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ByteLRU(entries={len(self._entries)}, size={self.size}/{self.max_bytes})"

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.size -= _cost(key, entry[0])


def _cost(key: str, value: bytes) -> int:
    return len(key.encode()) + len(value) + ENTRY_OVERHEAD
