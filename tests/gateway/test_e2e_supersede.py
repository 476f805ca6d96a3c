"""Superseding and queued cancels: no GPU time on abandoned requests."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.http2 import H2Connection, H2Stream
from tests.e2e import Region, http11_post, region

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

MODEL = "starcoder2:3b"


def body(num_predict: int, prompt: str = "def parse(text):") -> bytes:
    return json.dumps(
        {"model": MODEL, "prompt": prompt, "options": {"num_predict": num_predict}}
    ).encode()


def headers(
    reg: Region, group: str | None = None, agent: str = "vscode/1.95"
) -> list[tuple[str, str]]:
    h = [
        ("content-type", "application/json"),
        ("authorization", f"Bearer {reg.token()}"),
        ("user-agent", agent),
    ]
    return [*h, ("x-ghostgate-group", group)] if group else h


async def settle(reg: Region, sim_quiet: bool = True) -> dict[str, Any]:
    """Wait until nothing is in flight anywhere; return the region's readiness."""

    def quiet() -> bool:
        r = reg.readyz(admin=True)
        stats = reg.sims[0].stats()
        return (
            r["inflight"] == 0
            and r["queued"] == 0
            and r["groups_live"] == 0
            and (not sim_quiet or (stats["active"] == 0 and stats["queued"] == 0))
        )

    for _ in range(200):
        if await asyncio.to_thread(quiet):
            return reg.readyz(admin=True)
        await asyncio.sleep(0.025)
    raise AssertionError(f"still busy: {reg.readyz(admin=True)} {reg.sims[0].stats()}")


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Region]:
    with region(tmp_path, sim_args=["--load-seconds", "0"]) as r:
        yield r


async def test_newer_completion_supersedes_older_cleanly(reg: Region) -> None:
    sim = reg.sims[0]
    async with await H2Connection.open("127.0.0.1", reg.port) as conn:
        older = await conn.request("POST", "/api/generate", headers(reg), body(500))
        assert await older.read_chunk()
        before = sim.stats()
        newer = await conn.request("POST", "/api/generate", headers(reg), body(10))
        older_lines = (await older.read_all()).splitlines()
        newer_lines = (await newer.read_all()).splitlines()
    # The older stream ended cleanly, saying why, in Ollama's shape.
    final = json.loads(older_lines[-1])
    assert older.finished and final["done"] is True and final["done_reason"] == "superseded"
    assert all(json.loads(line) for line in older_lines)
    assert json.loads(newer_lines[-1])["eval_count"] == 10
    after = sim.stats()
    assert after["aborted"] == before["aborted"] + 1
    assert after["tokens_after_client_left"] - before["tokens_after_client_left"] <= 2
    ready = await settle(reg)
    metrics = await asyncio.to_thread(metrics_text, reg)
    assert 'ghostgate_cancellations_total{reason="superseded",stage="streaming"} 1.0' in metrics
    assert 'ghostgate_tokens_total{kind="saved"}' in metrics
    assert ready["groups_live"] == 0
    # The same, as plain numbers the router sums on its status page.
    assert ready["waste"]["cancelled"] == {"superseded": 1}
    assert ready["waste"]["saved_tokens"] > 400


def metrics_text(reg: Region) -> str:
    import urllib.request

    with urllib.request.urlopen(reg.url + "/metrics", timeout=5) as response:
        return response.read().decode()


async def test_other_users_agents_and_chat_are_not_superseded(reg: Region) -> None:
    async with await H2Connection.open("127.0.0.1", reg.port) as conn:
        first = await conn.request("POST", "/api/generate", headers(reg), body(30))
        other_agent = await conn.request(
            "POST", "/api/generate", headers(reg, agent="neovim/0.10"), body(5)
        )
        chat = json.dumps(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": "hi"}],
                "options": {"num_predict": 5},
            }
        ).encode()
        chats = [await conn.request("POST", "/api/chat", headers(reg), chat) for _ in range(2)]
        streams = [first, other_agent, *chats]
        finals = [json.loads((await s.read_all()).splitlines()[-1]) for s in streams]
    assert [f["done_reason"] for f in finals] == ["length"] * 4


async def test_openai_superseded_stream_ends_with_finish_reason_and_done(reg: Region) -> None:
    payload = json.dumps(
        {"model": MODEL, "prompt": "x = ", "max_tokens": 400, "stream": True}
    ).encode()
    async with await H2Connection.open("127.0.0.1", reg.port) as conn:
        older = await conn.request("POST", "/v1/completions", headers(reg, "tab-1"), payload)
        assert await older.read_chunk()
        newer = await conn.request(
            "POST", "/v1/completions", headers(reg, "tab-1"), payload.replace(b"400", b"5")
        )
        older_raw, newer_raw = await older.read_all(), await newer.read_all()
    events = [e for e in older_raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "superseded"
    assert newer_raw.endswith(b"data: [DONE]\n\n")
    await settle(reg)


async def test_cancelled_or_superseded_queued_requests_never_reach_the_backend(
    tmp_path: Path,
) -> None:
    with region(tmp_path, slots=1, sim_args=["--load-seconds", "0"]) as reg:
        sim = reg.sims[0]
        async with await H2Connection.open("127.0.0.1", reg.port) as conn:
            busy = await conn.request("POST", "/api/generate", headers(reg, "a"), body(40))
            assert await busy.read_chunk()
            queued_then_reset = asyncio.ensure_future(
                conn.request("POST", "/api/generate", headers(reg, "b"), body(40))
            )
            queued_then_superseded = asyncio.ensure_future(
                conn.request("POST", "/api/generate", headers(reg, "c"), body(40))
            )
            await asyncio.sleep(0.1)
            assert reg.readyz()["queued"] == 2
            queued_then_reset.cancel()  # our client resets the stream: RST_STREAM
            replacement = await conn.request("POST", "/api/generate", headers(reg, "c"), body(3))
            superseded = await queued_then_superseded
            superseded_final = json.loads((await superseded.read_all()).splitlines()[-1])
            await busy.read_all()
            await replacement.read_all()
        assert superseded_final["done_reason"] == "superseded"
        requests = [
            r["prompt"]
            for r in json.loads(await asyncio.to_thread(sim_requests, sim.url))["requests"]
        ]
        assert len(requests) == 2  # the busy one and the replacement, nothing else
        await settle(reg)


def sim_requests(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url + "/sim/requests", timeout=5) as response:
        return response.read().decode()


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_a_storm_of_random_cancels_leaves_nothing_in_flight(reg: Region) -> None:
    rng = random.Random(7)
    pid = reg.child.pid
    await settle(reg)
    fds_before = fd_count(pid)
    tasks_before = reg.readyz(admin=True)["tasks"]

    async def h2_client(conn: H2Connection, n: int) -> None:
        for _ in range(n):
            group = f"g{rng.randrange(6)}"
            path, payload = rng.choice(
                [
                    ("/api/generate", body(rng.randrange(1, 60))),
                    (
                        "/v1/completions",
                        json.dumps(
                            {
                                "model": MODEL,
                                "prompt": "y",
                                "stream": True,
                                "max_tokens": rng.randrange(1, 60),
                            }
                        ).encode(),
                    ),
                ]
            )
            try:
                stream: H2Stream = await asyncio.wait_for(
                    conn.request("POST", path, headers(reg, group), payload), 5
                )
            except TimeoutError:
                continue
            for _ in range(rng.randrange(0, 4)):
                if not await stream.read_chunk():
                    break
            if rng.random() < 0.7:
                await stream.reset()
            else:
                await stream.read_all()

    def http11_client(n: int) -> None:
        for _ in range(n):
            payload = body(rng.randrange(5, 80))
            with socket.create_connection(("127.0.0.1", reg.port), timeout=5) as sock:
                sock.sendall(
                    http11_post(
                        "/api/generate",
                        reg.token(),
                        payload,
                        {"X-Ghostgate-Group": f"h{rng.randrange(3)}"},
                    )
                )
                if rng.random() < 0.5:
                    sock.recv(rng.randrange(1, 400))
                # and close, mid-request or mid-stream

    async with await H2Connection.open("127.0.0.1", reg.port) as conn:
        await asyncio.gather(
            *(h2_client(conn, 40) for _ in range(4)),
            *(asyncio.to_thread(http11_client, 25) for _ in range(2)),
        )
    ready = await settle(reg)
    stats = reg.sims[0].stats()
    assert stats["requests"] > 50 and stats["aborted"] > 10
    assert ready["inflight"] == 0 and ready["queued"] == 0 and ready["groups_live"] == 0
    assert ready["tasks"] <= tasks_before
    # No upstream connection or client socket left open (a little slack for
    # pooled keep-alive connections to the worker).
    assert fd_count(pid) <= fds_before + 8
