from __future__ import annotations

import pytest

from gateway.dialects.ollama.request import parse_chat, parse_generate, parse_model_field
from gateway.errors import (
    BadRequest,
    Dialect,
    NoCapacity,
    Unauthorized,
    Unprocessable,
    render_error,
)


def test_generate_routes_on_model_and_keeps_body() -> None:
    req = parse_generate(b'{"model": "starcoder2", "prompt": "def", "options": {"num_predict": 8}}')
    assert req.model == "starcoder2:latest" and req.stream is True and req.num_predict == 8


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b'"x"', b"\xff\xfe"])
def test_malformed_is_400(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_generate(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": 7}',
        b'{"model": "m", "prompt": 1}',
        b'{"model": "m", "stream": "yes"}',
        b'{"model": "m", "options": []}',
        b'{"model": "m", "raw": 1}',
        b'{"model": "m", "options": {"num_predict": "ten"}}',
        b'{"model": "m", "options": {"num_predict": true}}',
    ],
)
def test_wrong_types_are_422(raw: bytes) -> None:
    with pytest.raises(Unprocessable):
        parse_generate(raw)


def test_missing_model_is_400() -> None:
    with pytest.raises(BadRequest, match="model is required"):
        parse_generate(b'{"prompt": "x"}')


def test_chat_messages_checked() -> None:
    assert parse_chat(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}').model
    for raw in (
        b'{"model": "m", "messages": "hi"}',
        b'{"model": "m", "messages": [1]}',
        b'{"model": "m", "messages": [{"role": "user", "content": 5}]}',
    ):
        with pytest.raises(Unprocessable):
            parse_chat(raw)


def test_show_accepts_legacy_name() -> None:
    assert parse_model_field(b'{"name": "starcoder2:3b"}') == "starcoder2:3b"
    with pytest.raises(BadRequest):
        parse_model_field(b"{}")


def test_errors_render_in_each_dialect() -> None:
    status, headers, body = render_error(Unauthorized("no token"), Dialect.OLLAMA)
    assert status == 401 and body == b'{"error": "no token"}'
    assert (b"www-authenticate", b'Bearer realm="ghostgate"') in headers
    status, headers, body = render_error(NoCapacity("busy", retry_after=2), Dialect.OPENAI)
    assert status == 503 and (b"retry-after", b"2") in headers
    assert b'"type": "server_error"' in body and b'"message": "busy"' in body
