"""Ollama's request bodies: parsed and checked, never rewritten.

The gateway reads a request only as far as it must to route it (the model)
and to refuse what Ollama would choke on (wrong types); the bytes it forwards
are the bytes it received. Malformed JSON is a 400, a field of the wrong type
a 422, each in Ollama's `{"error": "..."}` shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.errors import BadRequest, Unprocessable
from gateway.pool import normalize_model

# Field -> accepted JSON types, for the fields the gateway or Ollama relies on.
_GENERATE_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "prompt": (str,),
    "suffix": (str,),
    "system": (str,),
    "template": (str,),
    "raw": (bool,),
    "stream": (bool,),
    "think": (bool, str),
    "format": (str, dict),
    "options": (dict,),
    "keep_alive": (str, int, float),
    "images": (list,),
    "context": (list,),
}
_CHAT_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "messages": (list,),
    "tools": (list,),
    "stream": (bool,),
    "think": (bool, str),
    "format": (str, dict),
    "options": (dict,),
    "keep_alive": (str, int, float),
}
_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    dict: "an object",
    list: "an array",
    int: "a number",
    float: "a number",
}


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What routing needs from an /api/generate or /api/chat body."""

    model: str
    stream: bool
    num_predict: int
    body: dict[str, Any]


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or `BadRequest`."""
    if not raw.strip():
        raise BadRequest("request body is empty")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    return value


def parse_generate(raw: bytes) -> GenerationRequest:
    body = parse_json_object(raw)
    _check_types(body, _GENERATE_FIELDS)
    return _generation(body)


def parse_chat(raw: bytes) -> GenerationRequest:
    body = parse_json_object(raw)
    _check_types(body, _CHAT_FIELDS)
    for index, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            raise Unprocessable(f"messages[{index}] must be an object")
        if not isinstance(message.get("role"), str):
            raise Unprocessable(f"messages[{index}].role must be a string")
        content = message.get("content", "")
        if content is not None and not isinstance(content, str):
            raise Unprocessable(f"messages[{index}].content must be a string")
    return _generation(body)


def parse_model_field(raw: bytes) -> str:
    """The model of an /api/show body (`model`, or the legacy `name`)."""
    body = parse_json_object(raw)
    model = body.get("model", body.get("name"))
    if model is None or model == "":
        raise BadRequest("model is required")
    if not isinstance(model, str):
        raise Unprocessable("model must be a string")
    return normalize_model(model)


def _generation(body: dict[str, Any]) -> GenerationRequest:
    model = body.get("model")
    if not model:
        raise BadRequest("model is required")
    options = body.get("options") or {}
    num_predict = options.get("num_predict", -1)
    if isinstance(num_predict, bool) or not isinstance(num_predict, int | float):
        raise Unprocessable("options.num_predict must be a number")
    stream = body.get("stream", True)
    return GenerationRequest(
        model=normalize_model(model), stream=stream, num_predict=int(num_predict), body=body
    )


def _check_types(body: dict[str, Any], fields: dict[str, tuple[type, ...]]) -> None:
    for name, types in fields.items():
        value = body.get(name)
        if value is None:
            continue
        # bool is an int in Python; JSON keeps them apart, and so do we.
        if isinstance(value, bool) and bool not in types:
            raise Unprocessable(f"{name} must be {_TYPE_NAMES[types[0]]}")
        if not isinstance(value, types):
            raise Unprocessable(f"{name} must be {_TYPE_NAMES[types[0]]}")
