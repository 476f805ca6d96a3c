"""hpack 4.2.0 Huffman-decodes the same secret on every request; remember it.

h2, curl and nghttp2 send `authorization` as a never-indexed literal (RFC 7541
section 7.1.3), so a developer's ~300-byte JWT or API key arrives Huffman-coded
on every request and hpack, in pure Python, decodes it bit by bit: about 6% of
a region's CPU under 200 streams (96 µs per request). `decode_huffman` is a
pure function of its bytes, so its results are kept in a bounded LRU of 4096
strings, each at most 4 KiB (16 MiB at worst). Nothing changes on the wire; an
invalid string raises as before and is not remembered.
"""

from __future__ import annotations

import functools

import hpack.hpack
from hpack import huffman_table

from gateway.server.patches.base import Patch

DECODE_CACHE_ENTRIES = 4096
DECODE_CACHE_MAX_BYTES = 4096  # longer strings are decoded each time, not kept

PATCH = Patch(
    "hpack-decode-cache",
    why="the same never-indexed authorization value is Huffman-decoded per request",
    requires={"hpack": "4.2.0", "h2": "4.4.1"},
)

_stock_decode = huffman_table.decode_huffman


@functools.lru_cache(maxsize=DECODE_CACHE_ENTRIES)
def _decode_cached(encoded: bytes) -> bytes:
    return _stock_decode(encoded)


def decode_huffman(encoded: bytes) -> bytes:
    """hpack's Huffman decoder, remembering what it decoded recently."""
    if len(encoded) > DECODE_CACHE_MAX_BYTES:
        return _stock_decode(encoded)
    return _decode_cached(bytes(encoded))


def cache_info() -> functools._CacheInfo:
    """Hits, misses and size of the decoding cache (for tests and debugging)."""
    return _decode_cached.cache_info()


def clear_cache() -> None:
    _decode_cached.cache_clear()


# hpack.hpack imported `decode_huffman` by name; that name is what its Decoder calls.
PATCH.replace(hpack.hpack, "decode_huffman", decode_huffman)
