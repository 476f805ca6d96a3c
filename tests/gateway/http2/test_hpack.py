"""The HPACK shortcuts change cost, never meaning: what is decoded is what was sent."""

from __future__ import annotations

import hpack.hpack
import pytest
from hpack import Decoder, Encoder, HPACKDecodingError, NeverIndexedHeaderTuple
from hpack.huffman_table import decode_huffman as stock_decode

from gateway.http2.hpack import PlainEncoder
from gateway.server.patches import hpack_decode
from gateway.server.patches.hpack_decode import decode_huffman

HEADERS = [
    (":method", "POST"),
    (":path", "/api/generate"),
    ("content-type", "application/json"),
    NeverIndexedHeaderTuple("authorization", "Bearer eyJhbGciOiJFZERTQSJ9.e30.c2lnbmF0dXJl"),
]


def as_pairs(decoded: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in decoded]


def test_cached_decoder_agrees_with_hpack_and_remembers() -> None:
    encoded = Encoder().huffman_coder.encode(b"Bearer eyJhbGciOiJFZERTQSJ9.e30.c2lnbmF0dXJl")
    hpack_decode.clear_cache()
    assert decode_huffman(encoded) == stock_decode(encoded)
    assert decode_huffman(bytearray(encoded)) == stock_decode(encoded)
    info = hpack_decode.cache_info()
    assert (info.hits, info.misses) == (1, 1)


def test_cached_decoder_rejects_what_hpack_rejects_every_time() -> None:
    bad = b"\xff\xff\xff\xff"  # EOS in the string: invalid (RFC 7541 5.2)
    for _ in range(2):
        with pytest.raises(HPACKDecodingError):
            decode_huffman(bad)


def test_long_strings_bypass_the_cache() -> None:
    encoded = Encoder().huffman_coder.encode(b"x" * 8000)
    hpack_decode.clear_cache()
    assert decode_huffman(encoded) == b"x" * 8000
    assert hpack_decode.cache_info().currsize == 0


def test_apply_routes_hpack_through_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hpack.hpack, "decode_huffman", stock_decode)
    hpack_decode.PATCH.install()
    assert hpack.hpack.decode_huffman is decode_huffman  # type: ignore[attr-defined]
    block = Encoder().encode(HEADERS, huffman=True)
    decoded = Decoder().decode(block, raw=False)
    assert as_pairs(decoded) == [(str(n), str(v)) for n, v in HEADERS]


def test_plain_encoder_sends_strings_as_they_are() -> None:
    block = PlainEncoder().encode(HEADERS)
    assert b"Bearer eyJhbGciOiJFZERTQSJ9.e30.c2lnbmF0dXJl" in block
    assert b"/api/generate" in block
    decoded = Decoder().decode(block, raw=False)
    assert as_pairs(decoded) == [(str(n), str(v)) for n, v in HEADERS]
    assert isinstance(decoded[-1], NeverIndexedHeaderTuple)  # still never indexed


def test_plain_encoder_keeps_the_dynamic_table_in_step() -> None:
    encoder, decoder = PlainEncoder(), Decoder()
    first = encoder.encode([("x-ghostgate-group", "editor-1")])
    second = encoder.encode([("x-ghostgate-group", "editor-1")])
    assert len(second) < len(first)  # indexed the second time
    assert decoder.decode(first) == decoder.decode(second) == [("x-ghostgate-group", "editor-1")]
