"""HPACK (RFC 7541) made cheap for a proxy that sees the same secret on every request.

Profiled under 200 streams (loadtests/bench), header compression was the
largest single cost after the event loop itself, in the region and more so in
the router, because of one header: `authorization`. h2 sends it, as RFC 7541
section 7.1.3 advises for secrets, as a never-indexed literal, so it travels
whole on every request and is never found in the dynamic table, and so do
editors and curl. hpack is pure Python, and Huffman coding goes bit by bit:

1. Decoding. Every request's ~300-byte JWT (or API key) was Huffman-decoded
   again, ~6% of a region's CPU. `decode_huffman` is a pure function of its
   bytes, and the same token comes back on every request of a developer's
   session, so its results are kept in a bounded LRU (4096 strings, each at
   most 4 KiB: a few MiB at worst). Nothing changes on the wire.
2. Encoding. Our side sends header strings as they are, without Huffman
   coding (RFC 7541 leaves that to the encoder): the router's requests to
   regions and every proxy's responses. A header block grows by a few dozen
   bytes, about a third of a token's DATA frame; the peer's decoder skips
   its Huffman pass too. Never-indexed stays never-indexed.

Pinned with hpack==4.2.0 and h2==4.4.1; check again on an upgrade.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import hpack.hpack
from hpack import Encoder, huffman_table

DECODE_CACHE_ENTRIES = 4096
DECODE_CACHE_MAX_BYTES = 4096  # longer strings are decoded each time, not kept

_original_decode = huffman_table.decode_huffman


@functools.lru_cache(maxsize=DECODE_CACHE_ENTRIES)
def _decode_cached(encoded: bytes) -> bytes:
    return _original_decode(encoded)


def decode_huffman(encoded: bytes) -> bytes:
    """hpack's Huffman decoder, remembering what it decoded recently.

    An invalid string raises as before, and is not remembered."""
    if len(encoded) > DECODE_CACHE_MAX_BYTES:
        return _original_decode(encoded)
    return _decode_cached(bytes(encoded))


class PlainEncoder(Encoder):
    """An HPACK encoder that never Huffman-codes (indexing is unchanged)."""

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


def plain_encoding(connection: Any) -> None:
    """Make an `h2.connection.H2Connection` encode without Huffman coding.

    Call it before the connection has sent anything: the encoder carries the
    dynamic table, and the new one starts empty, as the peer's does."""
    connection.encoder = PlainEncoder()


def apply() -> None:
    """Install the decoding cache for every h2 connection in this process. Idempotent."""
    hpack.hpack.decode_huffman = decode_huffman  # type: ignore[attr-defined,assignment]
