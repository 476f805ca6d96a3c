"""Request bodies of /api/generate and /api/chat, checked and turned into a `Job`. No I/O.

The checks follow Ollama's order: JSON, model present, model known (404),
capabilities (a suffix needs a template with `.Suffix` unless `raw`), then the
prompt the model will see is rendered from the model's template. Fields a code
model cannot use (images, tools, format, think) are accepted and ignored.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.sim.catalog import ModelSpec, normalize_model
from workers.sim.errors import BadRequest, ModelNotFound


@dataclass(frozen=True, slots=True)
class Job:
    """One generation request, as the simulated model will run it."""

    route: str  # "generate" or "chat"
    model: str  # as the client wrote it; Ollama echoes it in every line
    spec: ModelSpec
    prompt: str  # the effective prompt: template rendered, or verbatim under raw
    raw: bool = False
    suffix: str = ""
    stream: bool = True
    options: Mapping[str, Any] | None = None
    num_predict: int | None = None
    stops: tuple[str, ...] = ()
    num_ctx: int | None = None
    keep_alive: float | None = None  # seconds; None: the server default; < 0: forever
    preload: bool = False  # nothing to generate: only load (or, keep_alive 0, unload)


def parse_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or `BadRequest` in Ollama's words."""
    if not raw.strip():
        raise BadRequest("missing request body")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("invalid request body: expected a JSON object")
    return value


def find_model(body: Mapping[str, Any], models: Mapping[str, ModelSpec]) -> tuple[str, ModelSpec]:
    """(the name as given, its spec) from `model`, or the legacy `name` field."""
    name = body.get("model") or body.get("name")
    if name is None or name == "":
        raise BadRequest("model is required")
    if not isinstance(name, str):
        raise BadRequest("model must be a string")
    spec = models.get(normalize_model(name))
    if spec is None:
        raise ModelNotFound(name)
    return name, spec


def parse_generate(body: Mapping[str, Any], models: Mapping[str, ModelSpec]) -> Job:
    """A `Job` from an /api/generate body; raises `SimError` for what Ollama refuses."""
    name, spec = find_model(body, models)
    prompt, suffix = _text(body, "prompt"), _text(body, "suffix")
    system, template = _text(body, "system"), _text(body, "template")
    raw = _flag(body, "raw", False)
    if raw and (template or system or body.get("context")):
        raise BadRequest("raw mode does not support template, system, or context")
    if suffix and not raw and not spec.supports_insert:
        raise BadRequest(f"{spec.registry_name} does not support insert")
    if raw:
        effective = prompt  # Ollama sends it as is, and drops the suffix
    else:
        values = {"Prompt": prompt, "Suffix": suffix, "System": system}
        effective = render_template(template or spec.template, values)
    return Job(
        "generate",
        name,
        spec,
        effective,
        raw=raw,
        suffix=suffix,
        stream=_flag(body, "stream", True),
        preload=prompt == "",
        **_options(body),
    )


def parse_chat(body: Mapping[str, Any], models: Mapping[str, ModelSpec]) -> Job:
    """A `Job` from an /api/chat body; raises `SimError` for what Ollama refuses."""
    name, spec = find_model(body, models)
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise BadRequest("messages must be an array")
    return Job(
        "chat",
        name,
        spec,
        render_chat(messages),
        stream=_flag(body, "stream", True),
        preload=not messages,
        **_options(body),
    )


def render_chat(messages: list[Any]) -> str:
    """One prompt from the conversation, in a plain role-tagged layout."""
    parts: list[str] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"messages[{index}] must be an object with a string role")
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise BadRequest(f"messages[{index}].content must be a string")
        parts.append(f"<|{message['role']}|>\n{content}\n")
    return "".join(parts) + "<|assistant|>\n"


_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)


def render_template(template: str, values: Mapping[str, str]) -> str:
    """The subset of Go templates Ollama's completion templates use.

    `{{ .Var }}`, `{{ if .Var }}`/`{{ else if .Var }}`/`{{ else }}`/`{{ end }}`, and
    the `{{-`/`-}}` whitespace trims. Blocks it does not know (`range`, `with`)
    render as nothing.
    """
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # per open block: (parent active, a branch taken)
    active, trim_left, pos = True, False, 0
    for match in _ACTION.finditer(template):
        text = template[pos : match.start()]
        text = text.lstrip() if trim_left else text
        if active:
            out.append(text.rstrip() if match.group(1) else text)
        trim_left, pos = bool(match.group(3)), match.end()
        action = match.group(2)
        if action.startswith(("if ", "range ", "with ")):
            taken = action.startswith("if ") and bool(values.get(action[3:].strip(" ."), ""))
            stack.append((active, taken))
            active = active and taken
        elif action == "else" or action.startswith("else if "):
            if not stack:
                raise BadRequest("template: unexpected {{else}}")
            parent, taken = stack[-1]
            branch = action == "else" or bool(values.get(action[8:].strip(" ."), ""))
            active = parent and not taken and branch
            stack[-1] = (parent, taken or branch)
        elif action == "end":
            if not stack:
                raise BadRequest("template: unexpected {{end}}")
            active = stack.pop()[0]
        elif active and action.startswith("."):
            out.append(values.get(action[1:], ""))
    tail = template[pos:]
    if active:
        out.append(tail.lstrip() if trim_left else tail)
    return "".join(out)


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_keep_alive(value: Any) -> float | None:
    """Seconds from Ollama's keep_alive: a number of seconds or a Go duration ("5m", "1h30m").

    None means "the server's default"; any negative value means "forever" (-1).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest("keep_alive must be a number or a duration string")
    seconds = float(value) if not isinstance(value, str) else _go_duration(value)
    return -1.0 if seconds < 0 else seconds


def _go_duration(text: str) -> float:
    # A bare number is seconds, as Ollama's OLLAMA_KEEP_ALIVE parsing allows ("-1", "300").
    with contextlib.suppress(ValueError):
        return float(text)
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == "0":
        return 0.0
    parts = _DURATION_PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise BadRequest(f'time: invalid duration "{text}"')
    return sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _options(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Job fields that come from `options` and `keep_alive`."""
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequest("options must be an object")
    stop = options.get("stop") or ()
    stops = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stops, list | tuple) or not all(isinstance(s, str) for s in stops):
        raise BadRequest('option "stop" must be a string or an array of strings')
    return {
        "options": options,
        "num_predict": _int_option(options, "num_predict"),
        "stops": tuple(stops),
        "num_ctx": _int_option(options, "num_ctx"),
        "keep_alive": parse_keep_alive(body.get("keep_alive")),
    }


def _int_option(options: Mapping[str, Any], key: str) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    # JSON has one number type; Go accepts 5.0 for an int field, not 5.5 or true.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f'option "{key}" must be of type integer')
    if isinstance(value, float) and not value.is_integer():
        raise BadRequest(f'option "{key}" must be of type integer')
    return int(value)


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value


def _flag(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"{key} must be a boolean")
    return value
