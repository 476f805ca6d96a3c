"""The embedded completion cache: swept of expired entries without a read, its
expiry heap bounded, its byte bound settable, what its bounds did counted."""

from __future__ import annotations

from gateway.store.lru import ENTRY_OVERHEAD, HEAP_SLACK, ByteLRU


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sweep_removes_expired_entries_without_a_read() -> None:
    clock = Clock()
    lru = ByteLRU(1 << 20, clock)
    lru.set("short", b"v", ttl=10)
    lru.set("long", b"v", ttl=100)
    lru.set("again", b"v", ttl=10)
    lru.set("again", b"v", ttl=100)  # set again: its first expiry no longer applies
    clock.now = 50
    assert lru.sweep() == 1
    assert len(lru) == 2 and lru.expired == 1
    assert lru.get("again") == b"v" and lru.get("long") == b"v"
    clock.now = 100
    assert lru.sweep() == 2
    assert len(lru) == 0 and lru.size == 0 and lru.expired == 3


def test_the_expiry_heap_stays_bounded_however_often_a_key_is_set() -> None:
    lru = ByteLRU(1 << 20, Clock())
    for n in range(100_000):
        lru.set("same", str(n).encode(), ttl=60)
    assert len(lru) == 1
    assert len(lru._expiry) <= 2 * len(lru) + HEAP_SLACK + 1


def test_resize_and_evictions() -> None:
    cost = 1 + 100 + ENTRY_OVERHEAD
    lru = ByteLRU(10 * cost, Clock())
    for key in "abcdefghij":
        lru.set(key, bytes(100), ttl=60)
    assert lru.evictions == 0
    lru.resize(4 * cost)
    assert len(lru) == 4 and lru.size == 4 * cost and lru.evictions == 6
    assert lru.get("a") is None and lru.get("j") == bytes(100)
    lru.set("k", bytes(100), ttl=60)
    assert lru.evictions == 7


def test_sweep_in_batches() -> None:
    clock = Clock()
    lru = ByteLRU(1 << 20, clock)
    for n in range(25):
        lru.set(str(n), b"v", ttl=1)
    clock.now = 2
    assert [lru.sweep(10), lru.sweep(10), lru.sweep(10)] == [10, 10, 5]
    assert len(lru) == 0
