"""No GPU time on repeated work: the completion cache and typing-through.

The cache holds finished completions of deterministic requests (temperature 0
or a fixed seed), keyed by everything that changes the output: model, prompt,
suffix and the generation options. It lives in the shared store: bounded in
bytes with a TTL in memory, or in Redis with a TTL, shared by every instance.

Typing-through: a developer who types the first characters of the completion
they were just shown sends a new request whose prompt is the old one plus
those characters. The rest of that completion is still the model's best
guess, so it is answered at once from memory, without the backend. Entries are
per group (one editor), kept briefly, and match only when the suffix and the
generation context are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gateway.store import Store, StoreError

log = logging.getLogger("ghostgate.cache")

TYPING_TTL = 120.0
TYPING_PER_GROUP = 4
TYPING_GROUPS = 10_000


@dataclass(frozen=True, slots=True)
class Completed:
    """A finished completion, as the client saw it."""

    text: str
    done_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Completed | None:
        try:
            data = json.loads(raw)
            return cls(
                str(data["text"]),
                str(data["done_reason"]),
                int(data["prompt_tokens"]),
                int(data["completion_tokens"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def deterministic(options: Mapping[str, Any]) -> bool:
    """Whether the same request gives the same text (so a cached answer is the answer)."""
    temperature, seed = options.get("temperature"), options.get("seed")
    greedy = isinstance(temperature, int | float) and not isinstance(temperature, bool)
    return (greedy and temperature == 0) or (isinstance(seed, int) and not isinstance(seed, bool))


def fingerprint(*parts: object) -> str:
    """A stable digest of JSON-able parts (the cache key, the typing context)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class _Shown:
    context: str
    prompt: str
    suffix: str
    completed: Completed
    at: float


class CompletionMemory:
    """The cache (in the store) and the per-group typing-through memory (local)."""

    def __init__(self, store: Store, ttl: float) -> None:
        self._store = store
        self._ttl = ttl
        self._shown: OrderedDict[str, deque[_Shown]] = OrderedDict()

    async def cached(self, key: str) -> Completed | None:
        try:
            raw = await self._store.cache_get("completion:" + key)
        except StoreError as exc:
            log.warning("cache read failed", extra={"error": str(exc)})
            return None
        return Completed.decode(raw) if raw else None

    async def store(self, key: str, completed: Completed) -> None:
        try:
            await self._store.cache_set("completion:" + key, completed.encode(), self._ttl)
        except StoreError as exc:
            log.warning("cache write failed", extra={"error": str(exc)})

    def remember(
        self, group: str, context: str, prompt: str, suffix: str, completed: Completed
    ) -> None:
        """What `group` was just shown, for its next request."""
        entries = self._shown.pop(group, None) or deque(maxlen=TYPING_PER_GROUP)
        entries.append(_Shown(context, prompt, suffix, completed, time.monotonic()))
        self._shown[group] = entries
        while len(self._shown) > TYPING_GROUPS:
            self._shown.popitem(last=False)

    def typed_through(self, group: str, context: str, prompt: str, suffix: str) -> Completed | None:
        """The rest of a completion `group` was shown, if `prompt` typed into it."""
        entries = self._shown.get(group)
        if not entries:
            return None
        now = time.monotonic()
        for shown in reversed(entries):
            if now - shown.at > TYPING_TTL or shown.context != context or shown.suffix != suffix:
                continue
            if not prompt.startswith(shown.prompt):
                continue
            typed = prompt[len(shown.prompt) :]
            text = shown.completed.text
            if typed and len(text) > len(typed) and text.startswith(typed):
                return Completed(
                    text[len(typed) :], shown.completed.done_reason, len(prompt) // 4, 0
                )
        return None

    def __repr__(self) -> str:
        return f"<CompletionMemory groups={len(self._shown)} ttl={self._ttl:g}s>"
