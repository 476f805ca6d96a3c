"""OpenAI (and Copilot) request bodies, checked and turned into Ollama requests.

`/v1/completions` and Copilot's `/v1/engines/{engine}/completions` become an
Ollama `/api/generate` (fill-in-the-middle when a `suffix` is sent);
`/v1/chat/completions` becomes `/api/chat`. Upstream requests always stream,
whatever the client asked: that is what lets the gateway stop a generation the
moment it is no longer wanted, and measure time to first token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.dialects.ollama.request import parse_json_object
from gateway.errors import BadRequest, Unprocessable
from gateway.pool import normalize_model

MAX_N = 4
DEFAULT_MAX_TOKENS = 256  # OpenAI's own default of 16 cuts code completions short
_NUMBER = (int, float)


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A text completion (optionally fill-in-the-middle) in any dialect."""

    model: str
    prompt: str
    suffix: str
    max_tokens: int
    stream: bool
    n: int
    stop: tuple[str, ...]
    include_usage: bool
    options: dict[str, Any] = field(default_factory=dict)
    # Copilot's `extra`: language, next_indent, trim_by_indentation, ...
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    stream: bool
    stop: tuple[str, ...]
    include_usage: bool
    options: dict[str, Any] = field(default_factory=dict)


def parse_completion(raw: bytes, model: str | None = None) -> CompletionRequest:
    """An OpenAI `/v1/completions` or Copilot body; `model` overrides (Copilot's engine)."""
    body = parse_json_object(raw)
    name = model or _required_str(body, "model")
    return CompletionRequest(
        model=normalize_model(name),
        prompt=_prompt(body.get("prompt", "")),
        suffix=_optional_str(body, "suffix"),
        max_tokens=_max_tokens(body),
        stream=_bool(body, "stream", False),
        n=_n(body),
        stop=_stop(body.get("stop")),
        include_usage=_include_usage(body),
        options=_sampling(body),
        extra=_object(body, "extra"),
    )


def parse_chat_completion(raw: bytes) -> ChatRequest:
    body = parse_json_object(raw)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Unprocessable("messages must be a non-empty array")
    return ChatRequest(
        model=normalize_model(_required_str(body, "model")),
        messages=[_message(m, i) for i, m in enumerate(messages)],
        max_tokens=_max_tokens(body, "max_completion_tokens"),
        stream=_bool(body, "stream", False),
        stop=_stop(body.get("stop")),
        include_usage=_include_usage(body),
        options=_sampling(body),
    )


def ollama_options(
    options: dict[str, Any], max_tokens: int, stop: tuple[str, ...]
) -> dict[str, Any]:
    merged = dict(options)
    merged["num_predict"] = max_tokens
    if stop:
        merged["stop"] = list(stop)
    return merged


def chat_body(request: ChatRequest) -> dict[str, Any]:
    return {
        "model": request.model,
        "messages": request.messages,
        "stream": True,
        "options": ollama_options(request.options, request.max_tokens, request.stop),
    }


def _required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise BadRequest(f"{name} is required")
    if not isinstance(value, str):
        raise Unprocessable(f"{name} must be a string")
    return value


def _optional_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Unprocessable(f"{name} must be a string")
    return value


def _prompt(value: Any) -> str:
    # OpenAI accepts a list of prompts; plugins send one. Several would mean
    # several choices per prompt, which no editor uses: refuse clearly.
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], str):
            raise Unprocessable("prompt must be a string or a list of exactly one string")
        return value[0]
    if not isinstance(value, str):
        raise Unprocessable("prompt must be a string")
    return value


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise Unprocessable(f"{name} must be a boolean")
    return value


def _int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or value != int(value):
        raise Unprocessable(f"{name} must be an integer")
    return int(value)


def _max_tokens(body: dict[str, Any], alias: str = "max_tokens") -> int:
    value = _int(body, "max_tokens")
    if value is None:
        value = _int(body, alias)
    if value is None:
        return DEFAULT_MAX_TOKENS
    if value < 1:
        raise Unprocessable("max_tokens must be at least 1")
    return value


def _n(body: dict[str, Any]) -> int:
    value = _int(body, "n")
    if value is None:
        return 1
    if not 1 <= value <= MAX_N:
        raise Unprocessable(f"n must be between 1 and {MAX_N}")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v for v in value if v)
    raise Unprocessable("stop must be a string or an array of strings")


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise Unprocessable("stream_options must be an object")
    return bool(options.get("include_usage", False))


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Unprocessable(f"{name} must be an object")
    return value


_SAMPLING = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, option in _SAMPLING.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, _NUMBER):
            raise Unprocessable(f"{name} must be a number")
        options[option] = value
    return options


def _message(message: Any, index: int) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise Unprocessable(f"messages[{index}] must be an object")
    role = message.get("role")
    if not isinstance(role, str):
        raise Unprocessable(f"messages[{index}].role must be a string")
    return {"role": role, "content": _content(message.get("content"), index)}


def _content(content: Any, index: int) -> str:
    # OpenAI allows an array of parts; keep the text ones.
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        ]
        return "".join(str(p) for p in parts)
    raise Unprocessable(f"messages[{index}].content must be a string or an array of parts")
