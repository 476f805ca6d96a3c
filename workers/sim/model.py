"""The simulated model: how long things take and what text comes out. No I/O.

Text is deterministic: the same (model, effective prompt) always yields the same
tokens, drawn by a `random.Random` seeded from a BLAKE2b hash of the two. The
text is lines of Python from a fixed bank, split into code-like tokens
(identifiers, operators, newlines with indentation), so FIM, stop-sequence and
indentation logic downstream sees realistic text. Drawing is one C-level
`choices` call per few lines, so a request costs microseconds of CPU.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

# The "model" writes whole lines of Python picked from this bank (each starts
# with its newline and indentation, as real code tokenizers split them), so
# the output has real indentation, blank lines and statements: what stop
# sequences ("\n\n", "\ndef") and indentation trimming downstream act on.
_LINES: tuple[str, ...] = (
    "\n    result = []",
    "\n    for item in items:",
    "\n        if item is None:",
    "\n            continue",
    "\n        result.append(item * 2)",
    "\n    return result",
    "\n\ndef helper(value):",
    "\n    total = 0",
    "\n    while total < value:",
    "\n        total += 1",
    "\n    return total",
    "\n    if not data:",
    "\n        return None",
    "\n    count = len(data)",
    "\n    left, right = 0, count - 1",
    "\n    while left <= right:",
    "\n        mid = (left + right) // 2",
    "\n        if data[mid] == key:",
    "\n            return mid",
    "\n    node = self.root",
    "\n    while node is not None:",
    "\n        node = node.next",
    "\n    # handle the empty case first",
    "\n    name = str(key).strip()",
    "\n    self.cache[key] = value",
    "\n    values = [v for v in items if v]",
    '\n    print(f"{name}: {count}")',
    '\n    raise ValueError("bad input")',
    '\n    return {"name": name, "count": count}',
    "\n    x = x + 1",
    "\n\n\nclass Node:",
    "\n    def __init__(self, value, next=None):",
    "\n        self.value = value",
    "\n        self.next = next",
)
_PIECE = re.compile(
    r"\n[ ]*|[ ]?[A-Za-z_][A-Za-z_0-9]*|[ ]?\d+|[ ]?(?:==|<=|>=|\+=|//|[^\sA-Za-z_0-9])"
)


def _split(line: str) -> list[str]:
    pieces = _PIECE.findall(line)
    assert "".join(pieces) == line, line  # the bank must tokenize without loss
    return pieces


VOCABULARY: tuple[str, ...] = tuple(sorted({p for line in _LINES for p in _split(line)}))
_INDEX = {piece: i for i, piece in enumerate(VOCABULARY)}
_LINE_IDS: tuple[tuple[int, ...], ...] = tuple(
    tuple(_INDEX[p] for p in _split(line)) for line in _LINES
)
_CHUNK = 8  # lines drawn per `choices` call: cheap, and little waste on an early abort

NS = 1_000_000_000


def prompt_token_count(prompt: str) -> int:
    """Tokens in a prompt, by the usual ~4 characters a token; at least 1."""
    return max(1, math.ceil(len(prompt) / 4))


def text_seed(model: str, prompt: str) -> int:
    """A stable 64-bit seed for (model, prompt); `hash()` is salted per process."""
    digest = hashlib.blake2b(f"{model}\0{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True, slots=True)
class LengthPlan:
    """How many tokens to generate, and why the generation would end there."""

    tokens: int
    by_limit: bool  # True: num_predict cut it ("length"); False: the model stopped ("stop")

    @property
    def done_reason(self) -> str:
        return "length" if self.by_limit else "stop"


def plan_length(num_predict: int | None, seed: int, *, low: int, high: int, cap: int) -> LengthPlan:
    """`num_predict` tokens when positive (capped); else a length from the seed in [low, high].

    Ollama treats a negative num_predict as "until the model stops", so does this.
    """
    if num_predict is not None and num_predict > 0:
        return LengthPlan(min(num_predict, cap), by_limit=True)
    return LengthPlan(low + seed % (high - low + 1), by_limit=False)


def prefill_seconds(prompt_tokens: int, prefill_tps: float) -> float:
    return prompt_tokens / prefill_tps


def decode_interval(decode_tps: float) -> float:
    return 1.0 / decode_tps


def prompt_tokens_after(tokens: int, start: float, end: float, lost_at: float | None) -> int:
    """Prompt tokens a prefill over [start, end] processed after the client left at `lost_at`.

    Prefill runs at a steady rate, so the share is the share of its time; a
    client that left before it began (e.g. while queued) wasted all of it.
    """
    if lost_at is None or lost_at >= end:
        return 0
    if lost_at <= start or end <= start:
        return tokens
    return round(tokens * (end - lost_at) / (end - start))


def token_ids(seed: int) -> Iterator[int]:
    """Endless vocabulary indices for `seed`: lines from the bank, drawn a chunk at a time."""
    rng = random.Random(seed)
    # The first line continues the line the cursor is on, as a completion
    # does: it starts without its newline (so stop=["\n"] gives one line).
    first, *rest = rng.choices(_LINE_IDS, k=_CHUNK)
    yield from first[1:] if VOCABULARY[first[0]].startswith("\n") else first
    for line in rest:
        yield from line
    while True:
        for line in rng.choices(_LINE_IDS, k=_CHUNK):
            yield from line


def token_stream(model: str, prompt: str) -> Iterator[str]:
    """The endless deterministic token stream for (model, prompt)."""
    for index in token_ids(text_seed(model, prompt)):
        yield VOCABULARY[index]


def context_ids(seed: int, generated: Sequence[int], limit: int = 32) -> list[int]:
    """Generate's `context`: a short, deterministic list of ints for the conversation."""
    return [seed % 32000, *generated[: limit - 1]]


class StopFilter:
    """Applies options.stop to streamed text, as Ollama does.

    Text that could be the start of a stop sequence is held back until it is
    known not to be one; when a stop sequence appears, the text before it is
    released and generation ends. The stop sequence itself is never emitted.
    """

    __slots__ = ("_pending", "_stops")

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to emit now, whether a stop sequence was hit)."""
        if not self._stops:
            return text, False
        pending = self._pending + text
        hits = [i for i in (pending.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._pending = ""
            return pending[: min(hits)], True
        keep = self._partial_stop_length(pending)
        self._pending = pending[len(pending) - keep :] if keep else ""
        return pending[: len(pending) - keep], False

    def flush(self) -> str:
        """Held-back text, released when generation ends without a stop."""
        pending, self._pending = self._pending, ""
        return pending

    def _partial_stop_length(self, text: str) -> int:
        """Length of the longest end of `text` that begins some stop sequence."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
