"""Ollama's request bodies: parsed and checked, never rewritten; and the input
bounds every dialect's parser applies (`Limits`).

The gateway reads a request only as far as it must to route it (the model)
and to refuse what Ollama would choke on (wrong types); the bytes it forwards
are the bytes it received. Malformed JSON is a 400, a field of the wrong type
a 422, each in Ollama's `{"error": "..."}` shape.

Input bounds, so that no body costs the region more than its size says:

    nesting deeper than max_json_depth   400  checked before json.loads, which recurses
    NaN, Infinity, -Infinity literals    400  not JSON (RFC 8259 section 6)
    a number out of its field's range    422  1e999 is inf, 10**400 an int: both refused
    stop: count, length of each          422  matched against every relayed token
    n over max_choices                   422  (OpenAI) each choice holds a slot
    model name over max_model_name_bytes 422  before any cache, lock or log

Messages name the field and never quote its value: they reach the access log.
`BodyOutOfBounds` and `FieldOutOfBounds` carry the bound for the metric
`ghostgate_input_refusals_total{bound}`.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import add, sub
from typing import Any

from gateway.errors import BadRequest, Unprocessable
from gateway.pool import normalize_model
from gateway.settings import Limits

DEFAULT_LIMITS = Limits()
MAX_TOKENS = 1_000_000  # num_predict, max_tokens: far past any model's context
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what Ollama (Go) holds in an integer option
FLOAT_MAX = sys.float_info.max

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
# Ollama's documented numeric options (api.Options); Go truncates a float given
# for an integer one, so only finiteness and int64 range are ours to check,
# and num_predict's own range.
_INTEGER_OPTIONS = (
    "num_keep",
    "seed",
    "num_predict",
    "top_k",
    "repeat_last_n",
    "mirostat",
    "num_ctx",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
)
_FLOAT_OPTIONS = (
    "temperature",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "mirostat_tau",
    "mirostat_eta",
    "tfs_z",
)


class BodyOutOfBounds(BadRequest):
    """A body refused before it is JSON to us (400); `bound` labels the metric."""

    def __init__(self, message: str, *, bound: str) -> None:
        super().__init__(message)
        self.bound = bound


class FieldOutOfBounds(Unprocessable):
    """A field past an input bound (422); `bound` labels the metric."""

    def __init__(self, message: str, *, bound: str) -> None:
        super().__init__(message)
        self.bound = bound


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What routing needs from an /api/generate or /api/chat body."""

    model: str
    stream: bool
    num_predict: int
    body: dict[str, Any]


def parse_json_object(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The body as a JSON object, or `BadRequest`."""
    if not raw.strip():
        raise BadRequest("request body is empty")
    try:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")  # as json.loads does
    except UnicodeDecodeError:
        raise BadRequest("invalid JSON: the body is not UTF-8 text") from None
    if nesting_exceeds(text, limits.max_json_depth):
        raise BodyOutOfBounds(
            f"request body nesting too deep (more than {limits.max_json_depth} levels)",
            bound="json_depth",
        )
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    except ValueError:  # an integer past Python's 4300 digits
        raise BadRequest("invalid JSON: a number is too long") from None
    except RecursionError:  # unreachable past the depth check; kept as the last guard
        raise BadRequest("request body nesting too deep") from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    return value


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether JSON `text` nests arrays and objects more than `limit` deep.

    Checked before json.loads, whose C scanner recurses once per level and has
    no depth hook (object hooks run after the children are parsed). Only
    C-speed str and bytes operations, linear in the text: a Python loop over
    the characters would cost ~100 ms per MiB. Measured on 1 MiB: a code prompt
    full of braces ~2 ms, 100,000 levels 0.4 ms, the worst shapes found (many
    peaks a few levels high) ~20 ms, where json.loads itself takes 40-230 ms.
    Malformed text may come out either way; json.loads then refuses it.
    """
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case: too few openers to nest that deep
    # Drop escapes first, so every quote left delimits a string, then the
    # strings (a prompt full of braces nests nothing), then all but brackets.
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(unescaped.split('"')[::2]).encode("utf-8", "surrogatepass")
    brackets = outside.translate(_AS_SQUARE, _NOT_BRACKETS)
    # Removing every innermost `[]` lowers a balanced text's depth by exactly
    # one; it pays while the text has many short peaks (few bytes per `][`).
    removed = 0
    while removed < limit and brackets.count(b"][") * 16 > len(brackets):
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            break
        brackets, removed = shorter, removed + 1
    return bool(brackets) and _max_depth(brackets) + removed > limit


def _max_depth(brackets: bytes) -> int:
    """The deepest point of a string of `[` and `]`, in C-level steps per peak.

    Split at every `][`, each piece is `[`*x `]`*y (a split took the first `[`
    of every piece but the first and the last `]` of every piece but the last).
    The peak of piece i is x_i above the sum of (2x_j - len_j) over j < i."""
    pieces = brackets.split(b"][")
    opens = list(map(bytes.count, pieces, repeat(b"[")))
    rises = map(sub, map(add, opens, opens), map(len, pieces))
    deepest: int = max(map(add, accumulate(rises, initial=0), opens))
    return deepest


_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def _refuse_constant(name: str) -> object:
    # Python's json accepts these; JSON does not, nor Ollama's Go decoder.
    raise BodyOutOfBounds(f"invalid JSON: {name} is not a JSON value", bound="json_constant")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def parse_generate(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> GenerationRequest:
    body = parse_json_object(raw, limits)
    _check_types(body, _GENERATE_FIELDS)
    return _generation(body, limits)


def parse_chat(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> GenerationRequest:
    body = parse_json_object(raw, limits)
    _check_types(body, _CHAT_FIELDS)
    for index, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            raise Unprocessable(f"messages[{index}] must be an object")
        if not isinstance(message.get("role"), str):
            raise Unprocessable(f"messages[{index}].role must be a string")
        content = message.get("content", "")
        if content is not None and not isinstance(content, str):
            raise Unprocessable(f"messages[{index}].content must be a string")
    return _generation(body, limits)


def parse_model_field(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> str:
    """The model of an /api/show body (`model`, or the legacy `name`)."""
    body = parse_json_object(raw, limits)
    model = body.get("model", body.get("name"))
    if model is None or model == "":
        raise BadRequest("model is required")
    if not isinstance(model, str):
        raise Unprocessable("model must be a string")
    return normalize_model(model_name(model, "model", limits))


def model_name(value: str, name: str, limits: Limits) -> str:
    """`value`, unless it is longer than a model name may be."""
    bound = limits.max_model_name_bytes
    if len(value) > bound or len(value.encode("utf-8", "surrogatepass")) > bound:
        raise FieldOutOfBounds(f"{name} is longer than {bound} bytes", bound="model_name")
    return value


def number(
    value: object, name: str, low: float = -FLOAT_MAX, high: float = FLOAT_MAX
) -> int | float:
    """A JSON number in [low, high]: never a boolean, NaN or infinite (1e999 is
    inf to Python), nor an integer too large for a float (10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unprocessable(f"{name} must be a number")
    return _in_range(value, name, low, high)


def integer(value: object, name: str, low: int, high: int) -> int:
    """A JSON integer in [low, high] (`2.0` is one; `2.5` is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unprocessable(f"{name} must be an integer")
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        raise Unprocessable(f"{name} must be an integer")
    return int(_in_range(value, name, low, high))


def _in_range(value: int | float, name: str, low: float, high: float) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldOutOfBounds(f"{name} must be a finite number", bound="number")
    if not low <= value <= high:
        raise FieldOutOfBounds(
            f"{name} must be between {_shown(low)} and {_shown(high)}", bound="number"
        )
    return value


def _shown(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def stop_sequences(value: object, name: str, limits: Limits, *, string: bool) -> tuple[str, ...]:
    """Stop sequences as sent (a single string too where `string`), empty ones dropped."""
    if value is None:
        return ()
    items = [value] if string and isinstance(value, str) else value
    kind = "a string or an array of strings" if string else "an array of strings"
    if not isinstance(items, list):
        raise Unprocessable(f"{name} must be {kind}")
    if len(items) > limits.max_stop_sequences:
        raise FieldOutOfBounds(
            f"{name} has more than {limits.max_stop_sequences} sequences", bound="stop_sequences"
        )
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise Unprocessable(f"{name} must be {kind}")
        if len(item) > limits.max_stop_length:
            raise FieldOutOfBounds(
                f"{name}[{index}] is longer than {limits.max_stop_length} characters",
                bound="stop_length",
            )
    return tuple(item for item in items if item)


def _generation(body: dict[str, Any], limits: Limits) -> GenerationRequest:
    model = body.get("model")
    if not model:
        raise BadRequest("model is required")
    options = _options(body.get("options") or {}, limits)
    num_predict = options.get("num_predict")
    stream = body.get("stream", True)
    return GenerationRequest(
        model=normalize_model(model_name(model, "model", limits)),
        stream=stream,
        num_predict=-1 if num_predict is None else int(num_predict),
        body=body,
    )


def _options(options: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """`options`, checked where Ollama or the gateway reads it (forwarded as sent)."""
    for name in _INTEGER_OPTIONS:
        if options.get(name) is not None:
            number(options[name], f"options.{name}", INT64_MIN, INT64_MAX)
    for name in _FLOAT_OPTIONS:
        if options.get(name) is not None:
            number(options[name], f"options.{name}")
    if options.get("num_predict") is not None:
        # -1: no limit, -2: fill the context (Ollama's own values).
        number(options["num_predict"], "options.num_predict", -2, MAX_TOKENS)
    stop_sequences(options.get("stop"), "options.stop", limits, string=False)
    return options


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
        if isinstance(value, float) and not math.isfinite(value):
            raise FieldOutOfBounds(f"{name} must be a finite number", bound="number")
