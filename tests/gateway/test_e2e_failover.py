"""Backends dying and healing under a live region proxy."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import ollama
import pytest

from gateway.http2 import H2Connection
from tests.e2e import region, sim_worker

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

MODEL = "starcoder2:3b"


def body(num_predict: int) -> bytes:
    return json.dumps(
        {"model": MODEL, "prompt": "class Tree:", "options": {"num_predict": num_predict}}
    ).encode()


async def test_backend_killed_mid_stream_ends_only_its_stream(tmp_path: Path) -> None:
    with region(tmp_path, sims=2, sim_args=["--load-seconds", "0"]) as reg:
        headers = [("content-type", "application/json"), ("authorization", f"Bearer {reg.token()}")]
        async with await H2Connection.open("127.0.0.1", reg.port) as conn:
            # Least outstanding first: the two streams land on different workers.
            # Two editors of one user (distinct groups), so neither supersedes the other.
            streams = [
                await conn.request(
                    "POST",
                    "/api/generate",
                    [*headers, ("x-ghostgate-group", f"editor{i}")],
                    body(150),
                )
                for i in range(2)
            ]
            for stream in streams:
                assert await stream.read_chunk()
            assert [s.stats()["active"] for s in reg.sims] == [1, 1]
            reg.sims[0].handle.kill()
            bodies = await asyncio.gather(*(s.read_all() for s in streams))
            assert all(s.status == 200 and s.finished for s in streams)
            finals = sorted((json.loads(b.splitlines()[-1]) for b in bodies), key=len)
            # One stream ends with Ollama's in-stream error line, the other completes.
            assert set(finals[0]) == {"error"}
            assert finals[1]["done"] is True and finals[1]["eval_count"] == 150
            # The connection is fine: the surviving worker takes the next request.
            again = await conn.request("POST", "/api/generate", headers, body(3))
            assert again.status == 200 and json.loads((await again.read_all()).splitlines()[-1])
        reg.wait_until(
            lambda r: r["inflight"] == 0 and r["backends"]["healthy"] == 1,
            what="the dead worker ejected, nothing in flight",
        )


def test_dead_backend_is_skipped_and_used_again_once_healed(tmp_path: Path) -> None:
    with ExitStack() as stack, region(tmp_path, sims=2, sim_args=["--load-seconds", "0"]) as reg:
        client = ollama.Client(host=reg.url, headers=reg.auth())
        stack.callback(client.close)
        dead = reg.sims[0]
        port = urllib.parse.urlsplit(dead.url).port
        dead.handle.kill()
        for _ in range(8):  # none fails: connect errors retry on the live worker
            assert client.generate(model=MODEL, prompt="x = ", options={"num_predict": 2}).done
        reg.wait_until(lambda r: r["backends"]["healthy"] == 1, what="one healthy backend")
        with sim_worker(
            tmp_path, "sim0-healed", ["--port", str(port), "--load-seconds", "0"]
        ) as healed:
            reg.wait_until(lambda r: r["backends"]["healthy"] == 2, what="the worker back")

            # The survivor has the model loaded, so it is preferred until its
            # four slots are full; eight at once must spill onto the healed one.
            def generate(i: int) -> ollama.GenerateResponse:
                # Eight editors (groups): none supersedes another.
                headers = {**reg.auth(), "X-Ghostgate-Group": f"editor{i}"}
                with ollama.Client(host=reg.url, headers=headers) as editor:
                    return editor.generate(model=MODEL, prompt="y = ", options={"num_predict": 20})

            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(generate, range(8)))
            assert all(r.done for r in results)
            assert healed.stats()["requests"] > 0
