"""Input bounds of generation bodies, in both dialects' parsers, without sockets.

Each bound: one past it refused (status, dialect shape, the bound for the
metric), at it accepted. Numbers Python's json makes of NaN, 1e999 and 10**400
never become a 500.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway.config import from_table
from gateway.dialects.ollama.request import (
    BodyOutOfBounds,
    FieldOutOfBounds,
    nesting_exceeds,
    parse_chat,
    parse_generate,
    parse_json_object,
    parse_model_field,
)
from gateway.dialects.openai.request import parse_chat_completion, parse_completion
from gateway.errors import BadRequest, ClientError, Dialect, Unprocessable, render_error
from gateway.settings import Limits

Parser = Callable[[bytes], object]

MESSAGES = [{"role": "user", "content": "hi"}]


def ollama_generate(**fields: Any) -> bytes:
    return json.dumps({"model": "starcoder2:3b", "prompt": "def", **fields}).encode()


def ollama_chat(**fields: Any) -> bytes:
    return json.dumps({"model": "llama3:8b", "messages": MESSAGES, **fields}).encode()


def openai_completion(**fields: Any) -> bytes:
    return json.dumps({"model": "starcoder2:3b", "prompt": "def", **fields}).encode()


def openai_chat(**fields: Any) -> bytes:
    return json.dumps({"model": "llama3:8b", "messages": MESSAGES, **fields}).encode()


def copilot(raw: bytes) -> object:
    return parse_completion(raw, model="copilot-codex")


OLLAMA: list[tuple[Parser, Callable[..., bytes]]] = [
    (parse_generate, ollama_generate),
    (parse_chat, ollama_chat),
]
OPENAI: list[tuple[Parser, Callable[..., bytes]]] = [
    (parse_completion, openai_completion),
    (copilot, openai_completion),
    (parse_chat_completion, openai_chat),
]
EVERY = OLLAMA + OPENAI


def refused(parse: Parser, raw: bytes) -> ClientError:
    with pytest.raises(ClientError) as info:
        parse(raw)
    return info.value


def field_bound(parse: Parser, raw: bytes, bound: str) -> FieldOutOfBounds:
    error = refused(parse, raw)
    assert isinstance(error, FieldOutOfBounds), error
    assert error.status == 422 and error.bound == bound
    return error


# Nesting.


def nested(levels: int) -> Any:
    """`levels` of arrays and objects, alternating, innermost empty."""
    value: Any = []
    for level in range(levels - 1):
        value = {"a": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize(("parse", "body"), EVERY)
def test_nesting_to_32_levels_is_accepted_and_33_refused(
    parse: Parser, body: Callable[..., bytes]
) -> None:
    # The body object itself is the first level; `extra`/`format` nest the rest.
    field = "extra" if parse in (parse_completion, copilot) else "format"
    if parse is parse_chat_completion:
        field = "response_format"  # not read, but parsed: the bound holds for it too
    at = body(**{field: {"x": nested(30)}})
    assert not nesting_exceeds(at.decode(), 32)
    parse(at)
    error = refused(parse, body(**{field: {"x": nested(31)}}))
    assert isinstance(error, BodyOutOfBounds) and error.bound == "json_depth"
    assert error.status == 400 and "nesting too deep" in error.message


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b"{" + b'"a":{' * 100_000 + b"}" * 100_001,
        b'{"model": "m", "format": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_a_100000_deep_body_is_a_fast_400(raw: bytes) -> None:
    started = time.perf_counter()
    error = refused(parse_generate, raw)  # not a RecursionError
    assert time.perf_counter() - started < 0.05
    assert isinstance(error, BadRequest) and error.status == 400
    assert "nesting too deep" in error.message


def test_brackets_in_strings_nest_nothing() -> None:
    code = "function f() { if (x) { return [[[[{{{{ '\\\"[[[' }}}}]]]]; } }\n" * 50
    parse_generate(ollama_generate(prompt=code, suffix="]]]]}}}}" * 10 + "\\"))


def test_the_nesting_scan_agrees_with_the_parsed_depth() -> None:
    for levels in range(1, 40):
        text = json.dumps({"a": nested(levels), "s": "[[[[{{{{" * 10, "e": '\\"[{'})
        assert nesting_exceeds(text, 32) == (levels + 1 > 32), levels


# NaN, Infinity, huge numbers.


PLACEHOLDER = 123456789


def with_literal(parse: Parser, body: Callable[..., bytes], field: str, literal: str) -> bytes:
    """A body with `literal`, as sent, for `field` (Ollama: under `options`)."""
    if (parse, body) in OLLAMA:
        raw = body(options={field: PLACEHOLDER})
    else:
        raw = body(**{field: PLACEHOLDER})
    return raw.replace(str(PLACEHOLDER).encode(), literal.encode())


def fields_of(parse: Parser, body: Callable[..., bytes]) -> list[str]:
    if (parse, body) in OLLAMA:
        return ["num_predict", "seed", "temperature", "top_k", "num_ctx"]
    fields = ["max_tokens", "seed", "temperature", "top_p"]
    return fields if parse is parse_chat_completion else [*fields, "n"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(("parse", "body"), EVERY)
def test_nan_and_infinity_literals_are_not_json(
    parse: Parser, body: Callable[..., bytes], constant: str
) -> None:
    for field in fields_of(parse, body):
        error = refused(parse, with_literal(parse, body, field, constant))
        assert isinstance(error, BodyOutOfBounds) and error.bound == "json_constant"
        assert error.status == 400 and constant in error.message


@pytest.mark.parametrize("number", ["1e999", "-1e999", str(10**400), str(-(10**400))])
@pytest.mark.parametrize(("parse", "body"), EVERY)
def test_huge_numbers_are_422_naming_the_field(
    parse: Parser, body: Callable[..., bytes], number: str
) -> None:
    for field in fields_of(parse, body):
        error = refused(parse, with_literal(parse, body, field, number))
        assert isinstance(error, Unprocessable) and error.status == 422, (field, error)
        assert field in error.message and len(error.message) < 100
        assert "0" * 64 not in error.message


@pytest.mark.parametrize(
    ("options", "accepted"),
    [
        ({"num_predict": -2}, True),  # fill the context
        ({"num_predict": -1}, True),  # no limit
        ({"num_predict": -3}, False),
        ({"num_predict": 1_000_000}, True),
        ({"num_predict": 1_000_001}, False),
        ({"num_predict": 12.0}, True),  # Ollama truncates a float, as before
        ({"seed": 2**63 - 1}, True),
        ({"seed": 2**63}, False),
        ({"seed": -(2**63)}, True),
        ({"seed": -(2**63) - 1}, False),
        ({"temperature": 0.7, "top_p": 0.9, "mirostat_eta": 0.1}, True),
        ({"temperature": 1e308}, True),
    ],
)
def test_ollama_option_ranges(options: dict[str, Any], accepted: bool) -> None:
    raw = ollama_generate(options=options)
    if accepted:
        request = parse_generate(raw)
        assert request.num_predict == int(options.get("num_predict", -1))
    else:
        error = field_bound(parse_generate, raw, "number")
        assert f"options.{next(iter(options))}" in error.message


def test_ollama_keep_alive_must_be_finite() -> None:
    raw = ollama_generate(keep_alive=0).replace(b'"keep_alive": 0', b'"keep_alive": 1e999')
    assert "keep_alive" in field_bound(parse_generate, raw, "number").message


@pytest.mark.parametrize(
    ("fields", "accepted"),
    [
        ({"max_tokens": 1_000_000}, True),
        ({"max_tokens": 1_000_001}, False),
        ({"max_tokens": 0}, False),
        ({"seed": 2**63 - 1}, True),
        ({"seed": 2**63}, False),
        ({"seed": 7.0}, True),
        ({"temperature": 2}, True),
        ({"temperature": 2.01}, False),
        ({"temperature": -0.1}, False),
        ({"top_p": 1}, True),
        ({"top_p": 1.5}, False),
        ({"presence_penalty": -2, "frequency_penalty": 2}, True),
        ({"frequency_penalty": 2.5}, False),
    ],
)
@pytest.mark.parametrize(("parse", "body"), OPENAI)
def test_openai_ranges(
    parse: Parser, body: Callable[..., bytes], fields: dict[str, Any], accepted: bool
) -> None:
    raw = body(**fields)
    if accepted:
        parse(raw)
    else:
        error = refused(parse, raw)
        assert error.status == 422 and next(iter(fields)) in error.message


def test_openai_seed_must_be_an_integer() -> None:
    error = refused(parse_completion, openai_completion(seed=1.5))
    assert error.status == 422 and "seed must be an integer" in error.message
    assert parse_completion(openai_completion(seed=7.0)).options["seed"] == 7


# Stop sequences.


@pytest.mark.parametrize(("parse", "body"), EVERY)
def test_stop_sequences_count_and_length(parse: Parser, body: Callable[..., bytes]) -> None:
    def with_stop(stop: list[str]) -> bytes:
        return body(options={"stop": stop}) if (parse, body) in OLLAMA else body(stop=stop)

    field = "options.stop" if (parse, body) in OLLAMA else "stop"
    parse(with_stop(["s"] * 32))
    parse(with_stop(["x" * 256]))
    error = field_bound(parse, with_stop(["s"] * 33), "stop_sequences")
    assert field in error.message
    long = "long stop sequence " * 100
    error = field_bound(parse, with_stop(["a", "x" * 257, long]), "stop_length")
    assert f"{field}[1]" in error.message and "x" * 64 not in error.message


def test_a_stop_string_counts_as_one_sequence() -> None:
    assert parse_completion(openai_completion(stop="\n")).stop == ("\n",)
    field_bound(parse_completion, openai_completion(stop="x" * 257), "stop_length")


def test_ollama_stop_must_be_an_array_of_strings() -> None:
    for stop in ("\n", [1], {"a": 1}):
        error = refused(parse_generate, ollama_generate(options={"stop": stop}))
        assert isinstance(error, Unprocessable) and "options.stop" in error.message


def test_stop_limits_come_from_the_settings() -> None:
    limits = Limits(max_stop_sequences=2, max_stop_length=4)
    parse_generate(ollama_generate(options={"stop": ["abcd", "e"]}), limits)
    field_bound(
        lambda raw: parse_generate(raw, limits),
        ollama_generate(options={"stop": ["a"] * 3}),
        "stop_sequences",
    )
    field_bound(
        lambda raw: parse_completion(raw, limits=limits),
        openai_completion(stop="abcde"),
        "stop_length",
    )


# n.


@pytest.mark.parametrize("parse", [parse_completion, copilot])
def test_n_is_bounded_by_max_choices(parse: Parser) -> None:
    parse(openai_completion(n=4))
    error = field_bound(parse, openai_completion(n=5), "choices")
    assert error.message == "n must be at most 4"
    two = Limits(max_choices=2)
    assert parse_completion(openai_completion(n=2), limits=two).n == 2
    with pytest.raises(FieldOutOfBounds):
        parse_completion(openai_completion(n=3), limits=two)
    with pytest.raises(Unprocessable, match="n must be at least 1"):
        parse(openai_completion(n=0))


# Model names.


@pytest.mark.parametrize(("parse", "body"), [*EVERY[:2], OPENAI[0], OPENAI[2]])
def test_model_names_are_bounded_in_bytes(parse: Parser, body: Callable[..., bytes]) -> None:
    def named(model: str) -> bytes:
        raw = json.loads(body())
        raw["model"] = model
        return json.dumps(raw).encode()

    parse(named("m" * 256))
    parse(named("é" * 128))  # 256 bytes of UTF-8
    field_bound(parse, named("é" * 129), "model_name")
    error = field_bound(parse, named("m" * 1_000_000), "model_name")
    assert error.message == "model is longer than 256 bytes"


def test_copilot_engine_names_are_bounded_too() -> None:
    assert parse_completion(openai_completion(), model="e" * 256).model
    with pytest.raises(FieldOutOfBounds):
        parse_completion(openai_completion(), model="e" * 257)


def test_show_model_names_are_bounded() -> None:
    assert parse_model_field(b'{"model": "' + b"m" * 250 + b':3b"}')
    with pytest.raises(FieldOutOfBounds):
        parse_model_field(b'{"model": "' + b"m" * 257 + b'"}')


# Messages and shapes.


def test_no_message_quotes_the_value() -> None:
    secret = "def secret_function(): return 42  # " * 100
    bodies = [
        (parse_generate, ollama_generate(prompt=7)),
        (parse_generate, ollama_generate(model=secret)),
        (parse_generate, ollama_generate(options={"stop": [secret] * 40})),
        (parse_generate, ollama_generate(options={"stop": [secret]})),
        (parse_generate, ollama_generate(options={"num_predict": secret})),
        (parse_completion, openai_completion(stop=secret)),
        (parse_completion, openai_completion(temperature=secret)),
        (parse_completion, openai_completion(n=secret)),
        (parse_completion, b'{"model": "' + secret.encode() + b'", "prompt": '),
    ]
    for parse, raw in bodies:
        message = refused(parse, raw).message
        assert "secret" not in message and len(message) <= 100, message


def test_bounds_render_in_each_dialect() -> None:
    error = refused(parse_generate, ollama_generate(options={"stop": ["s"] * 33}))
    status, _, body = render_error(error, Dialect.OLLAMA)
    assert status == 422 and json.loads(body) == {
        "error": "options.stop has more than 32 sequences"
    }
    error = refused(parse_completion, openai_completion(n=9))
    status, _, body = render_error(error, Dialect.OPENAI)
    assert status == 422 and json.loads(body)["error"] == {
        "message": "n must be at most 4",
        "type": "invalid_request_error",
        "code": "invalid_field",
    }
    error = refused(parse_completion, b"[" * 40)
    status, _, body = render_error(error, Dialect.OPENAI)
    assert status == 400 and "nesting too deep" in json.loads(body)["error"]["message"]


def test_malformed_json_stays_400_with_a_clean_message() -> None:
    for raw, fragment in (
        (b'{"model": ', "invalid JSON"),
        (b"\xff\xfe\xfd", "invalid JSON"),
        (b'{"n": ' + b"9" * 5000 + b"}", "a number is too long"),
    ):
        error = refused(parse_json_object, raw)
        assert isinstance(error, BadRequest) and fragment in error.message
        assert "set_int_max_str_digits" not in error.message


def test_utf16_bodies_are_still_json() -> None:
    raw = json.dumps({"model": "m", "prompt": '{[\\"'}).encode("utf-16")
    assert parse_json_object(raw)["model"] == "m"


def test_the_input_limits_load_from_toml() -> None:
    limits = from_table(
        {
            "limits": {
                "max_stop_sequences": 8,
                "max_stop_length": 64,
                "max_choices": 2,
                "max_model_name_bytes": 128,
                "max_json_depth": 16,
            }
        }
    ).limits
    assert (
        limits.max_stop_sequences,
        limits.max_stop_length,
        limits.max_choices,
        limits.max_model_name_bytes,
        limits.max_json_depth,
    ) == (8, 64, 2, 128, 16)
    defaults = Limits()
    assert (
        defaults.max_stop_sequences,
        defaults.max_stop_length,
        defaults.max_choices,
        defaults.max_model_name_bytes,
        defaults.max_json_depth,
    ) == (32, 256, 4, 256, 32)
