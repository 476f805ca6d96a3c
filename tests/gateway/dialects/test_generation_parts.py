"""Pieces of the dialects' generation flow that need no socket."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.dialects.ollama.generation import LastLine, relay_body
from gateway.dialects.openai.generation import choice_jobs
from gateway.pool import Priority
from gateway.trace import Stage, Trace

FINAL = {
    "model": "starcoder2:3b",
    "response": "",
    "done": True,
    "done_reason": "stop",
    "prompt_eval_count": 123,
    "eval_count": 45,
}
STREAM = b"".join(
    [json.dumps({"response": f"t{i}", "done": False}).encode() + b"\n" for i in range(5)]
    + [json.dumps(FINAL).encode() + b"\n"]
)


def splits(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 12)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_last_line_whatever_the_read_boundaries() -> None:
    rng = random.Random(7)
    final = json.dumps(FINAL).encode()
    for _ in range(500):
        last = LastLine()
        for chunk in splits(STREAM, rng):
            last.feed(chunk)
        assert last.value() == final
    unterminated = LastLine()
    for chunk in (b'{"a": 1}\n{"b"', b": 2}"):
        unterminated.feed(chunk)
    assert unterminated.value() == b'{"b": 2}'
    assert LastLine().value() == b""


class SplitResponse:
    """An upstream response whose final NDJSON line arrives in two reads."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


@pytest.mark.anyio
async def test_token_counts_survive_a_final_line_split_across_reads() -> None:
    middle = STREAM.rindex(b'"prompt_eval_count"')
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    trace = Trace("rid", "/api/generate", 0.0)
    response = SplitResponse([STREAM[:middle], STREAM[middle:]])
    await relay_body(response, trace, send)  # type: ignore[arg-type]
    assert (trace.prompt_tokens, trace.generated_tokens) == (123, 45)
    assert trace.done_reason == "stop" and trace.stage is Stage.DONE
    assert b"".join(m["body"] for m in sent) == STREAM


def options_of(jobs: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(job.body)["options"] for job in jobs]


def test_n_choices_get_distinct_seeds_only_from_a_client_seed() -> None:
    body: dict[str, Any] = {"model": "m", "prompt": "p", "options": {"temperature": 0.8}}
    unseeded = options_of(choice_jobs("m", "/api/generate", body, Priority.COMPLETION, 3))
    # No seed of ours: each generation samples with its own, so identical
    # requests do not return identical answers every time.
    assert all("seed" not in options for options in unseeded)
    seeded = {**body, "options": {"temperature": 0.8, "seed": 7}}
    jobs = choice_jobs("m", "/api/generate", seeded, Priority.COMPLETION, 3)
    assert [options["seed"] for options in options_of(jobs)] == [7, 8, 9]
    (single,) = choice_jobs("m", "/api/generate", seeded, Priority.COMPLETION, 1)
    assert json.loads(single.body)["options"]["seed"] == 7
