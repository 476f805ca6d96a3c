"""The completion cache and typing-through in Ollama's dialect.

Which /api/generate requests may be answered from memory, what their keys are,
how a finished NDJSON stream becomes a `Completed`, and how a `Completed` is
sent back as the stream (or object) Ollama itself would have produced.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from gateway.completion import Completed, deterministic, fingerprint
from gateway.dialects.ollama.request import GenerationRequest
from gateway.settings import WasteSettings

# Fields that change what the model generates; `stream` and `keep_alive` do not.
_OUTPUT_FIELDS = ("prompt", "suffix", "raw", "system", "template", "format", "images", "context")


def memory_keys(
    request: GenerationRequest, waste: WasteSettings, group: str | None
) -> tuple[str | None, str | None]:
    """(cache key, typing-through context) of a generate request; None where not allowed."""
    body = request.body
    options = body.get("options") or {}
    fields = {name: body.get(name) for name in _OUTPUT_FIELDS}
    cache_key = None
    if waste.cache and deterministic(options):
        cache_key = fingerprint("ollama", request.model, fields, options)
    context = None
    if waste.typing_through and group and not body.get("raw") and not body.get("images"):
        # Everything but the prompt and the length limit must be unchanged.
        steady = {k: v for k, v in options.items() if k != "num_predict"}
        context = fingerprint(
            "ollama",
            request.model,
            body.get("system"),
            body.get("template"),
            body.get("format"),
            steady,
        )
    return cache_key, context


def completed_from_ndjson(chunks: list[bytes]) -> Completed | None:
    """The text and stats of a finished stream; None if it did not finish well."""
    pieces: list[str] = []
    final: dict[str, Any] = {}
    for line in b"".join(chunks).splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            return None
        if not isinstance(item, dict) or "error" in item:
            return None
        pieces.append(str(item.get("response") or ""))
        if item.get("done"):
            final = item
    if final.get("done_reason") not in ("stop", "length"):
        return None
    return Completed(
        "".join(pieces),
        str(final["done_reason"]),
        int(final.get("prompt_eval_count") or 0),
        int(final.get("eval_count") or 0),
    )


def ndjson_for(completed: Completed, model: str, stream: bool) -> bytes:
    """What Ollama would have sent for this completion, generated in no time."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    final = {
        "model": model,
        "created_at": now,
        "response": "",
        "done": True,
        "done_reason": completed.done_reason,
        "total_duration": 0,
        "load_duration": 0,
        "prompt_eval_count": completed.prompt_tokens,
        "prompt_eval_duration": 0,
        "eval_count": 0,  # nothing was evaluated: no backend saw this request
        "eval_duration": 0,
    }
    if not stream:
        return json.dumps({**final, "response": completed.text}).encode() + b"\n"
    first = {"model": model, "created_at": now, "response": completed.text, "done": False}
    return json.dumps(first).encode() + b"\n" + json.dumps(final).encode() + b"\n"
