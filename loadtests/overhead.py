"""The region proxy's added time to first token, against the simulated worker direct.

    python -m loadtests.overhead [--concurrency 1 64] [--requests 400] [--rounds 3]

Starts one simulated Ollama worker (fast mode: 20 tokens, 20 ms apart) and one
region proxy in front of it, then, for each concurrency, alternates rounds of
the same streamed /api/generate traffic straight to the worker and through the
proxy, so both paths see the same machine noise. Time to first token is taken
at the client: from sending the request to the first body byte. Clients:
aiohttp over HTTP/1.1 for both paths (like for like), and through the proxy
also our HTTP/2 client (one connection, many streams), which is how an editor
connection looks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import aiohttp

from gateway.auth import SigningKeys, mint
from gateway.http2 import H2Client
from router.cluster import RegionPlan, wait_ready
from workers.launch import start_sim
from workers.process import Child

BODY = json.dumps({"model": "starcoder2:3b", "prompt": "def fib(n):", "stream": True}).encode()


STAGGER = 0.4  # seconds: one 20-token stream at 20 ms a token


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run_http1(
    url: str, tokens: list[str] | None, concurrency: int, total: int
) -> list[float]:
    """TTFT of `total` streamed requests, `concurrency` at a time, over HTTP/1.1."""
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(worker: int) -> float:
            started = time.perf_counter()
            # Each simulated editor is its own developer: no one supersedes or
            # rate-limits another.
            group = {"X-Ghostgate-Group": f"editor{worker}"}
            if tokens:
                group["Authorization"] = f"Bearer {tokens[worker % len(tokens)]}"
            async with session.post(
                url + "/api/generate", data=BODY, headers={**headers, **group}
            ) as resp:
                first = 0.0
                async for _ in resp.content.iter_any():
                    if not first:
                        first = time.perf_counter() - started
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")
                return first

        return await _drive(one, concurrency, total)


async def run_http2(
    host: str, port: int, tokens: list[str], concurrency: int, total: int
) -> list[float]:
    """The same over one HTTP/2 connection with our client."""
    headers = [("content-type", "application/json")]
    async with H2Client(host, port) as client:

        async def one(worker: int) -> float:
            started = time.perf_counter()
            group = [
                ("x-ghostgate-group", f"editor{worker}"),
                ("authorization", f"Bearer {tokens[worker % len(tokens)]}"),
            ]
            stream = await client.request(
                "POST", "/api/generate", headers=[*headers, *group], body=BODY
            )
            first = 0.0
            async for _ in stream:
                if not first:
                    first = time.perf_counter() - started
            if stream.status != 200:
                raise RuntimeError(f"HTTP {stream.status}")
            return first

        return await _drive(one, concurrency, total)


async def _drive(
    one: Callable[[int], Awaitable[float]], concurrency: int, total: int
) -> list[float]:
    remaining = total
    results: list[float] = []

    async def worker(index: int) -> None:
        nonlocal remaining
        # Editors do not ask in lockstep: worker i starts i/concurrency of one
        # stream's length late, or every stream would start in the same
        # millisecond as its siblings for the whole run (loadtests/bench does
        # the same).
        await asyncio.sleep(STAGGER * index / concurrency)
        while remaining > 0:
            remaining -= 1
            results.append(await one(index))

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return results


async def measure(
    direct: str, proxy: RegionPlan, tokens: list[str], concurrency: int, total: int, rounds: int
) -> dict[str, object]:
    samples: dict[str, list[float]] = {"direct": [], "proxy_http1": [], "proxy_http2": []}
    for _ in range(rounds):
        samples["direct"] += await run_http1(direct, None, concurrency, total)
        samples["proxy_http1"] += await run_http1(proxy.url, tokens, concurrency, total)
        samples["proxy_http2"] += await run_http2(
            proxy.host, proxy.port, tokens, concurrency, total
        )
    return summarise(samples, concurrency, total * rounds)


def summarise(
    samples: dict[str, list[float]], concurrency: int, requests: int
) -> dict[str, object]:
    """One table row: TTFT p50, p99 and mean per path, in ms."""
    row: dict[str, object] = {"concurrency": concurrency, "requests": requests}
    for name, values in samples.items():
        row[name] = {
            "p50_ms": percentile(values, 50) * 1000,
            "p99_ms": percentile(values, 99) * 1000,
            "mean_ms": statistics.fmean(values) * 1000,
        }
    return row


def report(rows: list[dict[str, object]]) -> str:
    lines = [
        "| concurrency | path | TTFT p50 ms | TTFT p99 ms | added p50 ms | added p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        direct = row["direct"]
        assert isinstance(direct, dict)
        for path in ("direct", "proxy_http1", "proxy_http2"):
            stats = row[path]
            assert isinstance(stats, dict)
            added = (
                ("-", "-")
                if path == "direct"
                else (
                    f"{stats['p50_ms'] - direct['p50_ms']:+.2f}",
                    f"{stats['p99_ms'] - direct['p99_ms']:+.2f}",
                )
            )
            lines.append(
                f"| {row['concurrency']} | {path} | {stats['p50_ms']:.2f} | "
                f"{stats['p99_ms']:.2f} | {added[0]} | {added[1]} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.overhead", description=__doc__)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--requests", type=int, default=300, help="per path, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=18600)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    slots = max(args.concurrency)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        state = Path(tmp)
        keys = SigningKeys.load_or_create(state)
        sim = stack.enter_context(
            start_sim(extra_args=["--fast", "--parallel", str(slots)], log_path=state / "sim.log")
        )
        plan = RegionPlan("bench", "127.0.0.1", args.port, (sim.url,), slots)
        stack.enter_context(
            Child.start(
                "region", plan.command(sys.executable, state, True), log_path=state / "region.log"
            )
        )
        wait_ready(plan.url, time.monotonic() + 30)
        # One developer per concurrent stream, as in real use (per-user limits).
        tokens = [mint(keys.active, f"dev{i}", lifetime=1800)[0] for i in range(slots)]
        rows = [
            asyncio.run(measure(sim.url, plan, tokens, c, args.requests, args.rounds))
            for c in args.concurrency
        ]
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
