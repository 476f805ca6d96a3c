"""OpenAI (and Copilot) request bodies, checked and turned into Ollama requests.

`/v1/completions` and Copilot's `/v1/engines/{engine}/completions` become an
Ollama `/api/generate` (fill-in-the-middle when a `suffix` is sent);
`/v1/chat/completions` becomes `/api/chat`. Upstream requests always stream,
whatever the client asked: that is what lets the gateway stop a generation the
moment it is no longer wanted, and measure time to first token.

The input bounds (`Limits`: nesting, numbers, stops, `n`, the model name) are
gateway/dialects/ollama/request.py's, shared by every dialect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.dialects.ollama.request import (
    DEFAULT_LIMITS,
    INT64_MAX,
    INT64_MIN,
    MAX_TOKENS,
    FieldOutOfBounds,
    integer,
    model_name,
    number,
    parse_json_object,
    stop_sequences,
)
from gateway.errors import BadRequest, Unprocessable
from gateway.pool import normalize_model
from gateway.settings import Limits

DEFAULT_MAX_TOKENS = 256  # OpenAI's own default of 16 cuts code completions short


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


def parse_completion(
    raw: bytes, model: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> CompletionRequest:
    """An OpenAI `/v1/completions` or Copilot body; `model` overrides (Copilot's engine)."""
    body = parse_json_object(raw, limits)
    name = model or _required_str(body, "model")
    return CompletionRequest(
        model=normalize_model(model_name(name, "model", limits)),
        prompt=_prompt(body.get("prompt", "")),
        suffix=_optional_str(body, "suffix"),
        max_tokens=_max_tokens(body),
        stream=_bool(body, "stream", False),
        n=_n(body, limits),
        stop=stop_sequences(body.get("stop"), "stop", limits, string=True),
        include_usage=_include_usage(body),
        options=_sampling(body),
        extra=_object(body, "extra"),
    )


def parse_chat_completion(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> ChatRequest:
    body = parse_json_object(raw, limits)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Unprocessable("messages must be a non-empty array")
    return ChatRequest(
        model=normalize_model(model_name(_required_str(body, "model"), "model", limits)),
        messages=[_message(m, i) for i, m in enumerate(messages)],
        max_tokens=_max_tokens(body, "max_completion_tokens"),
        stream=_bool(body, "stream", False),
        stop=stop_sequences(body.get("stop"), "stop", limits, string=True),
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


def _max_tokens(body: dict[str, Any], alias: str = "max_tokens") -> int:
    for name in dict.fromkeys(("max_tokens", alias)):
        value = body.get(name)
        if value is not None:
            return integer(value, name, 1, MAX_TOKENS)
    return DEFAULT_MAX_TOKENS


def _n(body: dict[str, Any], limits: Limits) -> int:
    value = body.get("n")
    if value is None:
        return 1
    n = integer(value, "n", INT64_MIN, INT64_MAX)
    if n < 1:
        raise Unprocessable("n must be at least 1")
    if n > limits.max_choices:
        # Each choice is a backend generation: a slot, and a stream of the user's.
        raise FieldOutOfBounds(f"n must be at most {limits.max_choices}", bound="choices")
    return n


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


# The sampling fields passed on to Ollama's options, with OpenAI's ranges.
_SAMPLING: dict[str, tuple[float, float]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2),
}


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, (low, high) in _SAMPLING.items():
        value = body.get(name)
        if value is not None:
            options[name] = number(value, name, low, high)
    seed = body.get("seed")
    if seed is not None:
        options["seed"] = integer(seed, "seed", INT64_MIN, INT64_MAX)
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
