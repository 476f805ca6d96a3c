"""Hypothesis strategies for request bodies, in three kinds, for every route:

random      JSON of any shape (objects, arrays, scalars, nested)
almost      the route's own fields, each valid, of a wrong type, or absent;
            numbers huge, NaN, infinite or negative; long and odd strings
raw         bytes that are not quite JSON: empty, truncated, deep nesting,
            invalid UTF-8, NaN literals, numbers past int's digit limit,
            bodies over the 1 MiB limit, and the soak run's worst cases
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

from loadtests.soak import BAD_BODIES
from tests.fuzz.routes import MODELS, MiB, Route

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [0, -1, 1, 2**31, 2**31 - 1, 2**53 + 1, 2**63, -(2**63), 2**64, 10**30, 10**300]
    ),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 0.5, 1.5]),
)
# Every code point, lone surrogates included: JSON's \ud800 escapes decode to them.
ODD_TEXT = st.one_of(
    st.text(alphabet=st.characters(codec=None, categories=None), max_size=40),
    st.sampled_from(["", " ", "\x00", "\ud800", "\udfff", "\ufeff", "\u202e", "\n" * 50, "💥"]),
)
LONG_TEXT = st.builds(
    lambda unit, times: unit * times,
    st.sampled_from(["a", "é", "😀", "\ud800", "def f():\n    ", "\x00", "{"]),
    st.integers(min_value=1_000, max_value=200_000),
)
TEXT = st.one_of(ODD_TEXT, ODD_TEXT, LONG_TEXT)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(ODD_TEXT, inner, max_size=6)
    ),
    max_leaves=30,
)


def nested(depth: int, leaf: Any = 1) -> Any:
    """`depth` levels of arrays and objects around `leaf`."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


DEEP = st.builds(nested, st.integers(min_value=10, max_value=900), SCALARS)
WEIRD = st.one_of(JSON, DEEP, NUMBERS)


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value: mostly valid, else anything at all."""
    return st.one_of(valid, valid, valid, WEIRD)


def body(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """An object of the route's fields, with an odd extra key now and then."""
    fields = st.fixed_dictionaries(
        {name: field(s) for name, s in required.items()},
        optional={name: field(s) for name, s in optional.items()},
    )
    extras = st.dictionaries(ODD_TEXT, WEIRD, max_size=2)
    return st.builds(lambda f, e: {**e, **f}, fields, extras)


MODEL = st.one_of(
    st.sampled_from(MODELS),
    st.sampled_from(MODELS),
    st.sampled_from(["starcoder2", "library/starcoder2:3b", "nope:1b", " starcoder2:3b ", ""]),
    ODD_TEXT,
)
PROMPT = st.one_of(st.text(max_size=80), TEXT)
SMALL_COUNT = st.integers(min_value=-3, max_value=40)
STOP = st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=5))
OLLAMA_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "num_predict": field(SMALL_COUNT),
        "temperature": field(st.floats(0, 2)),
        "top_p": field(st.floats(0, 1)),
        "top_k": field(SMALL_COUNT),
        "seed": field(st.integers(0, 2**32)),
        "stop": field(STOP),
        "num_ctx": field(st.integers(-1, 100_000)),
        "repeat_penalty": field(st.floats(0, 2)),
    },
)
MESSAGE = st.fixed_dictionaries(
    {"role": field(st.sampled_from(["system", "user", "assistant", "tool"]))},
    optional={
        "content": field(PROMPT),
        "images": field(st.lists(st.text(max_size=8), max_size=2)),
    },
)
OPENAI_CONTENT = st.one_of(
    PROMPT,
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "image_url", ""])}, optional={"text": WEIRD}
        ),
        max_size=3,
    ),
)
OPENAI_MESSAGE = st.fixed_dictionaries(
    {"role": field(st.sampled_from(["system", "user", "assistant"]))},
    optional={"content": field(OPENAI_CONTENT), "name": field(st.text(max_size=8))},
)
SAMPLING = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "seed": st.integers(0, 2**32),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
}
STREAM_OPTIONS = st.fixed_dictionaries({}, optional={"include_usage": field(st.booleans())})
COPILOT_EXTRA = st.fixed_dictionaries(
    {},
    optional={
        "language": field(st.sampled_from(["python", "go", ""])),
        "next_indent": field(SMALL_COUNT),
        "trim_by_indentation": field(st.booleans()),
        "prompt_tokens": field(SMALL_COUNT),
        "suffix_tokens": field(SMALL_COUNT),
    },
)
_COMPLETION = {
    "suffix": PROMPT,
    "max_tokens": SMALL_COUNT,
    "stream": st.booleans(),
    "n": st.integers(-1, 6),
    "stop": STOP,
    "stream_options": STREAM_OPTIONS,
    "echo": st.booleans(),
    "logprobs": SMALL_COUNT,
    **SAMPLING,
}
ALMOST: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "generate": body(
        {"model": MODEL, "prompt": PROMPT},
        {
            "suffix": PROMPT,
            "system": PROMPT,
            "template": PROMPT,
            "raw": st.booleans(),
            "stream": st.booleans(),
            "think": st.booleans(),
            "format": st.sampled_from(["json", ""]),
            "options": OLLAMA_OPTIONS,
            "keep_alive": st.one_of(st.sampled_from(["5m", "0", "-1"]), SMALL_COUNT),
            "images": st.lists(st.text(max_size=8), max_size=2),
            "context": st.lists(SMALL_COUNT, max_size=5),
        },
    ),
    "chat": body(
        {"model": MODEL, "messages": st.lists(MESSAGE, max_size=4)},
        {
            "stream": st.booleans(),
            "options": OLLAMA_OPTIONS,
            "tools": st.lists(JSON, max_size=2),
            "format": st.sampled_from(["json", ""]),
            "think": st.booleans(),
            "keep_alive": SMALL_COUNT,
        },
    ),
    "show": body({}, {"model": MODEL, "name": MODEL, "verbose": st.booleans()}),
    "completions": body({"model": MODEL, "prompt": PROMPT}, _COMPLETION),
    "chat_completions": body(
        {"model": MODEL, "messages": st.lists(OPENAI_MESSAGE, max_size=4)},
        {"max_completion_tokens": SMALL_COUNT, **_COMPLETION},
    ),
    "copilot": body({"prompt": PROMPT}, {"extra": COPILOT_EXTRA, "model": MODEL, **_COMPLETION}),
}


def encode(value: Any) -> bytes:
    """JSON as Python writes it: NaN and Infinity as bare words, which Python's
    parser (and so the gateway's) accepts."""
    try:
        return json.dumps(value).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return b'{"unencodable": true}'


def truncated(raw: bytes, cut: int) -> bytes:
    return raw[: cut % max(1, len(raw))]


RAW = st.one_of(
    st.sampled_from(
        [
            b"",
            b" \n\t",
            b"null",
            b"[]",
            b'"a string"',
            b"123",
            b"{",
            b"}",
            b'{"model": }',
            b"\xef\xbb\xbf{}",
            b'{"model": "starcoder2:3b", "model": 1}',
            b'{"model": "starcoder2:3b", "prompt": "x", "options": {"num_predict": 1e999}}',
            b'{"model": "starcoder2:3b", "prompt": "x", "max_tokens": 1' + b"0" * 5000 + b"}",
            b'{"model": "starcoder2:3b", "prompt": "x", "options": {"num_predict": '
            + b"9" * 5000
            + b"}}",
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
            b'{"model": "starcoder2:3b", "prompt": "' + b"a" * (MiB + 10) + b'"}',
        ]
    ),
    st.sampled_from(BAD_BODIES),
    st.binary(max_size=200),
    st.builds(truncated, st.builds(encode, JSON), st.integers(0, 10_000)),
    st.builds(
        lambda model, word: (
            f'{{"model": "{model}", "prompt": "x", "max_tokens": {word}, "temperature": {word},'
            f' "options": {{"num_predict": {word}}}}}'
        ).encode(),
        st.sampled_from(MODELS),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "-0", "1e400", "-1e400", "1.5"]),
    ),
)


def bodies(route: Route) -> st.SearchStrategy[bytes]:
    """Any body a client might send to `route`: random, almost right, or raw."""
    if not route.has_body:
        return st.one_of(st.just(b""), st.just(b""), RAW)
    almost = ALMOST[route.name].map(encode)
    return st.one_of(almost, almost, almost, st.builds(encode, JSON), st.builds(encode, DEEP), RAW)
