"""Splitting Ollama's NDJSON stream into objects, whatever the chunk boundaries.

A TCP read can end in the middle of a line; `LineSplitter` keeps the partial
line for the next chunk. Used only where the gateway must translate (OpenAI
and Copilot dialects): the Ollama dialect passes bytes through untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


class LineSplitter:
    """Feed chunks, get complete JSON objects; `flush` returns a trailing line."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, chunk: bytes) -> Iterator[dict[str, Any]]:
        data = self._partial + chunk if self._partial else chunk
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            parsed = _parse(line)
            if parsed is not None:
                yield parsed

    def flush(self) -> Iterator[dict[str, Any]]:
        line, self._partial = self._partial, b""
        parsed = _parse(line)
        if parsed is not None:
            yield parsed


def _parse(line: bytes) -> dict[str, Any] | None:
    line = line.strip()
    if not line:
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return {"error": "backend sent a malformed line"}
    return value if isinstance(value, dict) else None
