"""Ollama's NDJSON lines as OpenAI server-sent events and JSON bodies.

One `ChoiceState` per generation tracks its text, its output filter (stop
sequences, FIM token stripping, Copilot's indentation rule) and its finish
reason. The encoders turn choices into the bytes each OpenAI client expects:
`text_completion` or `chat.completion.chunk` events, a usage event when asked,
and `data: [DONE]`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.completion import PassThrough, TextStage

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class ChoiceState:
    """One generation's state as it streams."""

    index: int
    filter: TextStage = field(default_factory=PassThrough)
    text: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""

    def on_line(self, line: dict[str, Any], chat: bool) -> str:
        """Text to emit for one Ollama line; sets `finish_reason` at the end."""
        if "error" in line:
            self.error = str(line["error"])
            self.finish_reason = "error"
            return ""
        piece = (line.get("message") or {}).get("content", "") if chat else line.get("response", "")
        emitted = self.filter.feed(piece) if piece else ""
        if line.get("done"):
            emitted += self.filter.flush()
            self.prompt_tokens = int(line.get("prompt_eval_count") or 0)
            self.completion_tokens = int(line.get("eval_count") or 0)
            self.finish_reason = "length" if line.get("done_reason") == "length" else "stop"
        elif self.filter.stopped:
            emitted += self.filter.flush()
            self.finish_reason = "stop"
        if emitted:
            self.text.append(emitted)
        return emitted

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


def completion_id(prefix: str) -> str:
    return f"{prefix}-{os.urandom(12).hex()}"


@dataclass(slots=True)
class Encoder:
    """Builds OpenAI events and bodies for one response."""

    model: str
    chat: bool
    include_usage: bool = False
    id: str = ""
    created: int = 0

    def __post_init__(self) -> None:
        self.id = self.id or completion_id("chatcmpl" if self.chat else "cmpl")
        self.created = self.created or int(time.time())

    @property
    def object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def event(self, payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def chunk(
        self, index: int, text: str | None, finish_reason: str | None, role: bool = False
    ) -> bytes:
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {
                "index": index,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        else:
            choice = {
                "text": text or "",
                "index": index,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        return self.event(self._envelope(self.object, [choice]))

    def error_event(self, message: str) -> bytes:
        return self.event(
            {"error": {"message": message, "type": "server_error", "code": "upstream_error"}}
        )

    def tail(self, choices: list[ChoiceState]) -> bytes:
        """Usage (if asked) and [DONE]."""
        out = b""
        if self.include_usage:
            out += self.event({**self._envelope(self.object, []), "usage": usage(choices)})
        return out + DONE

    def body(self, choices: list[ChoiceState]) -> dict[str, Any]:
        """A non-streamed response."""
        items: list[dict[str, Any]] = []
        for c in choices:
            text = "".join(c.text)
            if self.chat:
                items.append(
                    {
                        "index": c.index,
                        "logprobs": None,
                        "finish_reason": c.finish_reason,
                        "message": {"role": "assistant", "content": text},
                    }
                )
            else:
                items.append(
                    {
                        "text": text,
                        "index": c.index,
                        "logprobs": None,
                        "finish_reason": c.finish_reason,
                    }
                )
        kind = "chat.completion" if self.chat else "text_completion"
        return {**self._envelope(kind, items), "usage": usage(choices)}

    def _envelope(self, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }


def usage(choices: list[ChoiceState]) -> dict[str, int]:
    prompt = max((c.prompt_tokens for c in choices), default=0)
    completion = sum(c.completion_tokens for c in choices)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
