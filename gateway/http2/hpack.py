"""HPACK (RFC 7541) encoding without Huffman coding, for the header blocks we send.

Profiled under 200 streams (loadtests/bench), header compression was the
largest single cost after the event loop itself, in the region and more so in
the router, because of one header: `authorization`. h2 sends it, as RFC 7541
section 7.1.3 advises for secrets, as a never-indexed literal, so it travels
whole on every request and is never found in the dynamic table; hpack is pure
Python, and Huffman coding goes bit by bit (75 µs per request here).

Our side sends header strings as they are (RFC 7541 leaves Huffman coding to
the encoder): the router's requests to regions and every proxy's responses.
A header block grows by a few dozen bytes, about a third of a token's DATA
frame; the peer's decoder skips its Huffman pass too (17 µs per request).
Never-indexed stays never-indexed. The decoding side, a cache of decoded
strings, is a patch: gateway/server/patches/hpack_decode.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpack import Encoder


class PlainEncoder(Encoder):
    """An HPACK encoder that never Huffman-codes (indexing is unchanged), and
    keeps a pending table-size update.

    hpack 4.2.0 sends the dynamic-table size update of RFC 7541 6.3 when its
    table's `resized` flag is set, but setting the same size again before the
    next header block clears that flag: a peer that sends
    SETTINGS_HEADER_TABLE_SIZE twice never hears of the change and must fail
    the connection (found by tests/fuzz/test_hpack.py). The update stays
    pending until a header block carries it.
    """

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)

    @property
    def header_table_size(self) -> int:
        return int(self.header_table.maxsize)

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        pending = self.header_table.resized
        self.header_table.maxsize = value
        if pending or self.header_table.resized:
            self.header_table.resized = True
            self.table_size_changes.append(value)


def plain_encoding(connection: Any) -> None:
    """Make an `h2.connection.H2Connection` encode without Huffman coding.

    Call it before the connection has sent anything: the encoder carries the
    dynamic table, and the new one starts empty, as the peer's does."""
    connection.encoder = PlainEncoder()
