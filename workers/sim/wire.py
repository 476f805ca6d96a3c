"""Ollama's wire format: NDJSON token lines, the final statistics line, timestamps.

Ollama is written in Go, so JSON is written the way Go's encoding/json writes
it: compact, UTF-8, with `<`, `>`, `&` escaped as `\\u003c`... A token line is
built from bytes encoded once per request (the model) or once per process
(every vocabulary token), so the hot path is a few byte concatenations.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from workers.sim.engine import Outcome
from workers.sim.model import NS, VOCABULARY

_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
# A far-off expiry for models kept forever (Ollama shows a date centuries ahead).
_FOREVER_SECONDS = 300 * 365 * 86400


def go_json(value: Any) -> bytes:
    """`value` as Go's json.Marshal would write it."""
    return (
        json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_GO_ESCAPES).encode()
    )


_ENCODED_TOKENS = {token: go_json(token) for token in VOCABULARY}


class _SecondCache:
    __slots__ = ("prefix", "second")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""


_second_cache = _SecondCache()


def timestamp(epoch_ns: int | None = None) -> str:
    """RFC 3339 with nanoseconds, UTC, like Go's time.Time in JSON."""
    seconds, fraction = divmod(time.time_ns() if epoch_ns is None else epoch_ns, NS)
    cache = _second_cache
    if seconds != cache.second:  # formatting the date part costs; once a second suffices
        cache.second = seconds
        cache.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{cache.prefix}.{fraction:09d}Z"


def expiry_timestamp(seconds_from_now: float) -> str:
    """`expires_at` for /api/ps; infinity (kept forever) becomes a date far ahead."""
    ahead = _FOREVER_SECONDS if math.isinf(seconds_from_now) else seconds_from_now
    return timestamp(time.time_ns() + int(ahead * NS))


class LineEncoder:
    """Token lines for one request, /api/generate or /api/chat shaped."""

    __slots__ = ("_head", "_middle", "_route", "_tail")

    def __init__(self, route: str, model: str) -> None:
        self._route = route
        self._head = b'{"model":' + go_json(model) + b',"created_at":"'
        if route == "chat":
            self._middle = b'","message":{"role":"assistant","content":'
            self._tail = b'},"done":false}\n'
        else:
            self._middle = b'","response":'
            self._tail = b',"done":false}\n'

    def token(self, text: str) -> bytes:
        encoded = _ENCODED_TOKENS.get(text) or go_json(text)
        return self._head + timestamp().encode() + self._middle + encoded + self._tail


def final(route: str, model: str, text: str, outcome: Outcome) -> dict[str, Any]:
    """The `done: true` object: the last NDJSON line (text "") or the whole non-streamed answer."""
    body = _opening(route, model, text)
    body["done"] = True
    body["done_reason"] = outcome.done_reason
    if route == "generate":
        body["context"] = list(outcome.context)
    body.update(
        total_duration=outcome.total_ns,
        load_duration=outcome.load_ns,
        prompt_eval_count=outcome.prompt_tokens,
        prompt_eval_duration=outcome.prompt_eval_ns,
        eval_count=outcome.eval_count,
        eval_duration=outcome.eval_ns,
    )
    return body


def preloaded(route: str, model: str, done_reason: str) -> dict[str, Any]:
    """The answer to a request with nothing to generate ("load" or "unload")."""
    body = _opening(route, model, "")
    body.update(done=True, done_reason=done_reason)
    return body


def _opening(route: str, model: str, text: str) -> dict[str, Any]:
    if route == "chat":
        return {
            "model": model,
            "created_at": timestamp(),
            "message": {"role": "assistant", "content": text},
        }
    return {"model": model, "created_at": timestamp(), "response": text}
