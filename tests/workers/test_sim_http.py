"""The simulated worker on real sockets, in-process, driven like Ollama's clients drive Ollama."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from workers.sim.app import run_sim
from workers.sim.config import FastMode, Limits, SimConfig, Timing

pytestmark = pytest.mark.anyio

FIM = "starcoder2:3b"
PLAIN = "deepseek-coder:6.7b-base"
QUICK = SimConfig(timing=Timing(load_seconds=0.05, prefill_tps=100_000, decode_tps=200))
STAT_FIELDS = {
    "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
    "eval_count", "eval_duration",
}  # fmt: skip


@contextlib.asynccontextmanager
async def serve(config: SimConfig = QUICK) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with run_sim(config) as url, aiohttp.ClientSession() as session:
        yield url, session


async def post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with session.post(url, json=body) as resp:
        assert resp.headers["X-Ollama-Simulated"] == "1"
        return resp.status, await resp.json(content_type=None)


async def stats(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url + "/sim/stats") as resp:
        result: dict[str, Any] = await resp.json()
        return result


async def wait_stats(
    session: aiohttp.ClientSession, url: str, predicate: Callable[[dict[str, Any]], bool]
) -> tuple[dict[str, Any], float]:
    """(stats, seconds it took) once `predicate(stats)` holds; fails after 3 s."""
    started = time.monotonic()
    while not predicate(current := await stats(session, url)):
        assert time.monotonic() - started < 3.0, current
        await asyncio.sleep(0.005)
    return current, time.monotonic() - started


async def raw_generate(url: str, body: dict[str, Any]) -> tuple[Any, asyncio.StreamWriter]:
    """A bare HTTP/1.1 request, so the test decides exactly when the connection closes."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    payload = json.dumps(body).encode()
    head = f"POST /api/generate HTTP/1.1\r\nHost: sim\r\nContent-Length: {len(payload)}\r\n\r\n"
    writer.write(head.encode() + payload)
    await writer.drain()
    return reader, writer


async def test_generate_streams_a_line_per_token_as_it_is_made() -> None:
    config = replace(QUICK, timing=Timing(load_seconds=0.05, prefill_tps=100_000, decode_tps=50))
    async with serve(config) as (url, session):
        body = {"model": FIM, "prompt": "def fib(n):", "options": {"num_predict": 6}}
        async with session.post(url + "/api/generate", json=body) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/x-ndjson"
            arrivals, lines = [], []
            async for raw in resp.content:
                arrivals.append(time.monotonic())
                lines.append(json.loads(raw))
    assert len(lines) == 7
    assert all(not line["done"] and line["response"] for line in lines[:6])
    assert {"model", "created_at", "response", "done"} == set(lines[0])
    # 50 tok/s: five gaps of 20 ms between the first and the sixth token.
    assert arrivals[5] - arrivals[0] > 0.08
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "length" and final["response"] == ""
    assert STAT_FIELDS <= set(final) and final["eval_count"] == 6
    assert final["prompt_eval_count"] == 3  # 11 characters
    assert final["load_duration"] >= 50_000_000  # the model's first use
    assert final["eval_duration"] >= 100_000_000 and final["total_duration"] > 0
    assert all(isinstance(i, int) for i in final["context"]) and len(final["context"]) <= 32


async def test_non_streamed_answer_is_the_same_text() -> None:
    async with serve() as (url, session):
        body: dict[str, Any] = {"model": PLAIN, "prompt": "class Tree:"}
        async with session.post(url + "/api/generate", json=body) as resp:
            streamed = [json.loads(line) async for line in resp.content]
        status, whole = await post(session, url + "/api/generate", {**body, "stream": False})
    assert status == 200 and whole["done"] and whole["done_reason"] == "stop"
    assert whole["response"] == "".join(line["response"] for line in streamed)
    assert 16 <= whole["eval_count"] <= 64 and STAT_FIELDS <= set(whole)


async def test_chat_streamed_and_whole() -> None:
    async with serve() as (url, session):
        body: dict[str, Any] = {"model": PLAIN, "messages": [{"role": "user", "content": "sort"}]}
        async with session.post(url + "/api/chat", json=body) as resp:
            lines = [json.loads(line) async for line in resp.content]
        status, whole = await post(session, url + "/api/chat", {**body, "stream": False})
    assert lines[0]["message"]["role"] == "assistant" and not lines[0]["done"]
    assert lines[-1]["done"] and lines[-1]["message"] == {"role": "assistant", "content": ""}
    assert "context" not in lines[-1] and STAT_FIELDS <= set(lines[-1])
    assert status == 200 and whole["message"]["content"] == "".join(
        line["message"]["content"] for line in lines
    )


async def test_stop_sequences_end_the_answer_before_them() -> None:
    async with serve() as (url, session):
        body = {"model": FIM, "prompt": "x = ", "stream": False, "options": {"stop": ["\n"]}}
        status, whole = await post(session, url + "/api/generate", body)
    assert status == 200 and whole["done_reason"] == "stop"
    assert whole["response"] and "\n" not in whole["response"]


async def test_information_routes() -> None:
    async with serve() as (url, session):
        status, tags = await post_get(session, url + "/api/tags")
        assert {m["name"] for m in tags["models"]} == {FIM, PLAIN}
        entry = tags["models"][0]
        assert {"name", "model", "modified_at", "size", "digest", "details"} <= set(entry)
        assert {"format", "family", "families", "parameter_size", "quantization_level"} <= set(
            entry["details"]
        )
        assert (await post_get(session, url + "/api/ps"))[1] == {"models": []}
        await post(session, url + "/api/generate", {"model": FIM, "prompt": "a", "stream": False})
        ps = (await post_get(session, url + "/api/ps"))[1]["models"]
        assert [m["name"] for m in ps] == [FIM] and {"expires_at", "size_vram"} <= set(ps[0])
        status, shown = await post(session, url + "/api/show", {"model": FIM})
        assert status == 200 and ".Suffix" in shown["template"]
        assert "insert" in shown["capabilities"] and "model_info" in shown
        status, legacy = await post(session, url + "/api/show", {"name": PLAIN})
        assert legacy["template"] == "{{ .Prompt }}" and legacy["capabilities"] == ["completion"]
        assert (await post(session, url + "/api/show", {"model": "x"}))[0] == 404
        assert (await post_get(session, url + "/api/version"))[1] == {"version": "0.12.6"}
        async with session.get(url + "/") as resp:
            assert resp.status == 200 and await resp.text() == "Ollama is running"
        async with session.head(url + "/") as resp:
            assert resp.status == 200 and resp.headers["X-Ollama-Simulated"] == "1"
        async with session.get(url + "/api/nothing") as resp:
            assert resp.status == 404 and resp.headers["X-Ollama-Simulated"] == "1"


async def post_get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        assert resp.headers["X-Ollama-Simulated"] == "1"
        return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"model": "nope:1b", "prompt": "x"}, 404,
         'model "nope:1b" not found, try pulling it first'),
        ({"prompt": "x"}, 400, "model is required"),
        ({"model": PLAIN, "prompt": "a", "suffix": "b"}, 400,
         f"registry.ollama.ai/library/{PLAIN} does not support insert"),
    ],
)  # fmt: skip
async def test_errors_in_ollama_shape(body: dict[str, Any], status: int, error: str) -> None:
    async with serve() as (url, session):
        assert await post(session, url + "/api/generate", body) == (status, {"error": error})
        async with session.post(url + "/api/generate", data=b'{"model": ') as resp:
            assert resp.status == 400 and "error" in await resp.json()
        assert (await stats(session, url))["errors"] == 2


async def test_what_reaches_the_backend_is_logged() -> None:
    async with serve() as (url, session):
        fim = {"model": FIM, "prompt": "def f(", "suffix": ")", "options": {"num_predict": 2}}
        raw = {"model": PLAIN, "prompt": "<PRE> a", "suffix": "b", "raw": True, "stream": False}
        assert (await post(session, url + "/api/generate", {**fim, "stream": False}))[0] == 200
        assert (await post(session, url + "/api/generate", raw))[0] == 200
        _, log = await post_get(session, url + "/sim/requests")
    first, second = log["requests"]
    assert first["prompt"] == "<fim_prefix>def f(<fim_suffix>)<fim_middle>"
    assert first["suffix"] == ")" and first["options"] == {"num_predict": 2}
    assert second["prompt"] == "<PRE> a" and second["raw"] is True and second["stream"] is False
    assert not first["aborted"] and first["status"] == 200


async def test_a_full_queue_answers_503_server_busy() -> None:
    config = replace(QUICK, limits=Limits(parallel=1, max_queue=1))
    async with serve(config) as (url, session):
        body = {"model": FIM, "prompt": "x", "stream": False, "options": {"num_predict": 20}}
        running = asyncio.create_task(post(session, url + "/api/generate", body))
        await wait_stats(session, url, lambda s: s["active"] == 1)
        waiting = asyncio.create_task(post(session, url + "/api/generate", body))
        await wait_stats(session, url, lambda s: s["queued"] == 1)
        refused = await post(session, url + "/api/generate", body)
        assert refused == (
            503,
            {"error": "server busy, please try again.  maximum pending requests exceeded"},
        )
        assert [(await running)[0], (await waiting)[0]] == [200, 200]
        final = await stats(session, url)
    assert final["rejected_busy"] == 1 and final["peak_active"] == 1 and final["completed"] == 2


async def test_a_client_leaving_mid_stream_is_noticed_at_the_next_token() -> None:
    config = replace(QUICK, timing=Timing(load_seconds=0, prefill_tps=100_000, decode_tps=50))
    async with serve(config) as (url, session):
        reader, writer = await raw_generate(
            url, {"model": FIM, "prompt": "x", "options": {"num_predict": 500}}
        )
        received = b""
        while received.count(b'"done":false') < 3:
            received += await reader.read(65536)
        writer.close()
        await writer.wait_closed()
        after, elapsed = await wait_stats(session, url, lambda s: s["aborted"] == 1)
        assert elapsed < 0.2
        assert after["tokens_after_client_left"] <= 2 and after["tokens_generated"] < 10
        assert after["active"] == 0 and after["completed"] == 0
        assert after["models"][FIM]["aborted"] == 1
        log = (await post_get(session, url + "/sim/requests"))[1]["requests"]
    assert log[-1]["aborted"] is True


async def test_a_client_leaving_during_prefill_is_noticed_only_after_it() -> None:
    config = replace(QUICK, timing=Timing(load_seconds=0, prefill_tps=1000, decode_tps=50))
    async with serve(config) as (url, session):
        # 2000 characters: 500 prompt tokens, half a second of prefill.
        _, writer = await raw_generate(url, {"model": FIM, "prompt": "y" * 2000})
        await asyncio.sleep(0.1)
        writer.close()
        await writer.wait_closed()
        left = time.monotonic()
        after, _ = await wait_stats(session, url, lambda s: s["aborted"] == 1)
        noticed = time.monotonic() - left
    assert noticed > 0.3  # the prefill ran to its end first
    assert after["prompt_tokens"] == 500
    # About 0.4 s of the 0.5 s prefill came after the client left.
    assert 300 < after["prompt_tokens_after_client_left"] < 500
    assert after["tokens_after_client_left"] == 1 and after["tokens_generated"] == 1


async def test_preload_unload_and_reset() -> None:
    async with serve() as (url, session):
        status, loaded = await post(session, url + "/api/generate", {"model": FIM})
        assert status == 200 and loaded["done_reason"] == "load" and loaded["response"] == ""
        assert [m["name"] for m in (await post_get(session, url + "/api/ps"))[1]["models"]] == [FIM]
        body = {"model": FIM, "keep_alive": 0}
        assert (await post(session, url + "/api/generate", body))[1]["done_reason"] == "unload"
        assert (await post_get(session, url + "/api/ps"))[1]["models"] == []
        before = await stats(session, url)
        assert before["simulated"] is True and before["requests"] == 2
        assert before["models_loaded"] == 1
        async with session.post(url + "/sim/reset") as resp:
            reset = await resp.json()
    assert reset["requests"] == 0 and reset["models_loaded"] == 0 and reset["simulated"] is True
    assert set(reset["models"][FIM].values()) == {0}


async def test_fast_mode_serves_fixed_tokens_at_a_fixed_pace_and_still_counts() -> None:
    config = replace(QUICK, fast=FastMode(enabled=True, tokens=5, interval=0.01))
    async with serve(config) as (url, session):
        async with session.post(url + "/api/generate", json={"model": FIM, "prompt": "a"}) as resp:
            lines = [json.loads(line) async for line in resp.content]
        other = await post(
            session, url + "/api/generate", {"model": FIM, "prompt": "b" * 999, "stream": False}
        )
        assert len(lines) == 6 and lines[-1]["eval_count"] == 5
        assert lines[-1]["load_duration"] < 10_000_000  # no simulated load in fast mode
        assert other[1]["response"] == "".join(line["response"] for line in lines[:-1])
        reader, writer = await raw_generate(
            url, {"model": FIM, "prompt": "c", "options": {"num_predict": 1000}}
        )
        await reader.readuntil(b'"done":false')
        writer.close()
        await writer.wait_closed()
        after, _ = await wait_stats(session, url, lambda s: s["aborted"] == 1)
    assert after["fast"] is True and after["completed"] == 2
    assert after["tokens_generated"] < 40 and after["tokens_after_client_left"] <= 2


async def test_a_non_streamed_request_is_abandoned_between_tokens_too() -> None:
    config = replace(QUICK, timing=Timing(load_seconds=0, prefill_tps=100_000, decode_tps=50))
    async with serve(config) as (url, session):
        body = {"model": FIM, "prompt": "x", "stream": False, "options": {"num_predict": 500}}
        _, writer = await raw_generate(url, body)
        await asyncio.sleep(0.1)
        writer.close()
        await writer.wait_closed()
        after, elapsed = await wait_stats(session, url, lambda s: s["aborted"] == 1)
    assert elapsed < 0.2 and after["tokens_generated"] < 15
    assert after["tokens_after_client_left"] == 1


async def test_shutdown_cuts_streams_at_the_next_token() -> None:
    config = replace(QUICK, timing=Timing(load_seconds=0, prefill_tps=100_000, decode_tps=50))
    async with run_sim(config) as url:
        reader, writer = await raw_generate(
            url, {"model": FIM, "prompt": "x", "options": {"num_predict": 5000}}
        )
        await reader.readuntil(b'"done":false')
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 0.3  # not the whole shutdown grace period
    rest = await reader.read()
    assert b'"done":true' not in rest and not rest.endswith(b"0\r\n\r\n")  # cut, not ended
    writer.close()
    await writer.wait_closed()
