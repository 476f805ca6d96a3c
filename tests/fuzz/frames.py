"""Hypothesis strategies for HTTP/2: legal sequences of client actions through h2's
state machine (`Act`), and frames as they go on the wire, legal or not (`Frame`),
on random stream ids (tests/fuzz/sequences.py runs both).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from tests.fuzz.strategies import HEADER_NAME, VISIBLE, Request, requests


@dataclass(frozen=True, slots=True)
class Act:
    """One step of a legal HTTP/2 sequence, done through h2's state machine."""

    kind: str  # request | data | reset | ping | settings | window | priority | trailers | pause
    target: int = 0  # which of the sequence's own streams (modulo their count)
    request: Request | None = None
    end: bool = True  # request: END_STREAM with the body; data: END_STREAM
    payload: bytes = b""
    number: int = 0  # error code, increment, weight, setting value...
    other: int = 0  # priority: depends on; settings: which


LEGAL_SETTINGS = st.sampled_from(
    [
        (0x1, 0),
        (0x1, 4096),
        (0x1, 65536),
        (0x2, 0),
        (0x3, 0),
        (0x3, 1000),
        (0x4, 65535),
        (0x4, 2**20),
        (0x4, 2**31 - 1),
        (0x5, 16384),
        (0x5, 2**24 - 1),
        (0x6, 65536),
    ]
)
ACTS = st.one_of(
    st.builds(
        lambda request, end: Act("request", request=request, end=end),
        requests(
            headers=st.lists(st.tuples(HEADER_NAME, st.text(VISIBLE, max_size=20)), max_size=3)
        ),
        st.booleans(),
    ),
    st.builds(
        lambda t, p, e: Act("data", t, payload=p, end=e),
        st.integers(0, 9),
        st.binary(max_size=300),
        st.booleans(),
    ),
    st.builds(lambda t, c: Act("reset", t, number=c), st.integers(0, 9), st.integers(0, 13)),
    st.builds(lambda p: Act("ping", payload=p), st.binary(min_size=8, max_size=8)),
    st.builds(lambda s: Act("settings", number=s[1], other=s[0]), LEGAL_SETTINGS),
    st.builds(lambda t, n: Act("window", t, number=n), st.integers(-1, 9), st.integers(1, 2**20)),
    st.builds(
        lambda t, d, w, e: Act("priority", t, number=w, other=d, end=e),
        st.integers(-1, 9),
        st.integers(-1, 9),
        st.integers(1, 256),
        st.booleans(),
    ),
    st.builds(lambda t: Act("trailers", t), st.integers(0, 9)),
    st.builds(lambda ms: Act("pause", number=ms), st.integers(0, 20)),
)
LEGAL_SEQUENCES = st.lists(ACTS, min_size=1, max_size=25)

# Raw frames, legal or not: (type, flags, stream id, payload), any of them.
FRAME_TYPES = st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9, 0xA, 0x10, 0xFF])
STREAM_IDS = st.one_of(st.sampled_from([0, 1, 2, 3, 5, 7, 2**31 - 1]), st.integers(0, 2**31 - 1))
FLAGS = st.one_of(st.sampled_from([0x0, 0x1, 0x4, 0x5, 0x8, 0x20, 0x25, 0x2D]), st.integers(0, 255))


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame to put on the wire as it is; `kind` picks how its payload is made."""

    type: int
    flags: int
    stream_id: int
    payload: bytes
    kind: str = "raw"  # raw | headers (payload replaced by a valid HPACK block) | request


RAW_FRAMES = st.one_of(
    st.builds(Frame, FRAME_TYPES, FLAGS, STREAM_IDS, st.binary(max_size=64)),
    # Well-formed frame types with fuzzed fields.
    st.builds(
        lambda s, d: Frame(0x3, 0, s, d.to_bytes(4, "big")), STREAM_IDS, st.integers(0, 2**32 - 1)
    ),
    st.builds(
        lambda s, n: Frame(0x8, 0, s, n.to_bytes(4, "big")), STREAM_IDS, st.integers(0, 2**32 - 1)
    ),
    st.builds(
        lambda a, p: Frame(0x6, a, 0, p), st.sampled_from([0, 1]), st.binary(min_size=8, max_size=8)
    ),
    st.builds(
        lambda pairs: Frame(
            0x4, 0, 0, b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in pairs)
        ),
        st.lists(st.tuples(st.integers(0, 10), st.integers(0, 2**32 - 1)), max_size=4),
    ),
    st.builds(
        lambda s, d, w: Frame(0x2, 0, s, d.to_bytes(4, "big") + bytes([w])),
        STREAM_IDS,
        st.integers(0, 2**32 - 1),
        st.integers(0, 255),
    ),
    st.builds(lambda s, f: Frame(0x1, f, s, b"", kind="headers"), STREAM_IDS, FLAGS),
    st.builds(
        lambda s, d, f: Frame(0x0, f, s, d),
        STREAM_IDS,
        st.binary(max_size=200),
        st.sampled_from([0, 1]),
    ),
    st.builds(lambda s: Frame(0x1, 0x5, s, b"", kind="request"), st.sampled_from([1, 3, 5, 9, 11])),
)
RAW_SEQUENCES = st.lists(RAW_FRAMES, min_size=1, max_size=20)
