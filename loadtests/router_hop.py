"""The router hop's added time to first token, against going to the region directly.

    python -m loadtests.router_hop [--concurrency 1 32] [--requests 300] [--rounds 3]

Starts one simulated Ollama worker (fast mode: 4 tokens, 20 ms apart), one
region proxy in front of it (trusting the router's JWKS) and the router in
front of that, then, for each concurrency, alternates rounds of the same
streamed /api/generate traffic: to the region directly with a JWT, and through
the router in forward mode with the API key; each over HTTP/2 (our client, one
connection, many streams) and over HTTP/1.1 (aiohttp, as most editor plugins
connect). "added" compares each router path with the direct path of the same
protocol. Time to first token is taken at the client, from sending the request
to the first body byte. No WAN delay is simulated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from loadtests.overhead import run_http1, run_http2, summarise
from router.cli import create_key
from router.cluster import RegionPlan, router_command, wait_ready
from workers.launch import start_sim
from workers.process import Child

PATHS = ("region_direct_h2", "router_h2", "region_direct_http1", "router_http1")
BASELINE = {"router_h2": "region_direct_h2", "router_http1": "region_direct_http1"}


async def measure(
    region: RegionPlan,
    router_port: int,
    key: str,
    token: str,
    concurrency: int,
    total: int,
    rounds: int,
) -> dict[str, object]:
    samples: dict[str, list[float]] = {path: [] for path in PATHS}
    router = f"http://127.0.0.1:{router_port}"
    # The same clients as loadtests.overhead; every worker is its own group.
    for _ in range(rounds):
        samples["region_direct_h2"] += await run_http2(
            region.host, region.port, [token], concurrency, total
        )
        samples["router_h2"] += await run_http2("127.0.0.1", router_port, [key], concurrency, total)
        samples["region_direct_http1"] += await run_http1(region.url, [token], concurrency, total)
        samples["router_http1"] += await run_http1(router, [key], concurrency, total)
    return summarise(samples, concurrency, total * rounds)


def report(rows: list[dict[str, object]]) -> str:
    lines = [
        "| concurrency | path | TTFT p50 ms | TTFT p99 ms | added p50 ms | added p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        for path in PATHS:
            stats = row[path]
            assert isinstance(stats, dict)
            added = ("-", "-")
            if path in BASELINE:
                direct = row[BASELINE[path]]
                assert isinstance(direct, dict)
                added = (
                    f"{stats['p50_ms'] - direct['p50_ms']:+.2f}",
                    f"{stats['p99_ms'] - direct['p99_ms']:+.2f}",
                )
            lines.append(
                f"| {row['concurrency']} | {path} | {stats['p50_ms']:.2f} | "
                f"{stats['p99_ms']:.2f} | {added[0]} | {added[1]} |"
            )
    return "\n".join(lines)


def first_token(router: str, key: str) -> str:
    """A token from the router, the way an editor gets one."""
    import urllib.request

    request = urllib.request.Request(
        router + "/v1/token", method="POST", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(json.loads(response.read())["token"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.router_hop", description=__doc__)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--requests", type=int, default=300, help="per path, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=18700, help="the region; the router +1")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    slots = max(args.concurrency)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        state = Path(tmp)
        sim = stack.enter_context(
            # 4 tokens 20 ms apart: the first token is what is measured; short
            # streams keep the sequential rounds quick.
            start_sim(
                extra_args=["--fast", "--fast-tokens", "4", "--parallel", str(slots)],
                log_path=state / "sim.log",
            )
        )
        region = RegionPlan("us-west", "127.0.0.1", args.port, (sim.url,), slots)
        router_port = args.port + 1
        router = f"http://127.0.0.1:{router_port}"
        argv_router = router_command(
            sys.executable, "127.0.0.1", router_port, state / "router", [region]
        )
        stack.enter_context(Child.start("router", argv_router, log_path=state / "router.log"))
        wait_ready(router, time.monotonic() + 30, path="/healthz")
        argv_region = region.command(
            sys.executable, state / "region", True, jwks=router + "/.well-known/jwks.json"
        )
        argv_region += ["--rate-limit", "0", "--max-streams", "0"]  # one user, many streams
        stack.enter_context(Child.start("region", argv_region, log_path=state / "region.log"))
        wait_ready(region.url, time.monotonic() + 30)
        wait_ready(router, time.monotonic() + 30)
        key = asyncio.run(create_key(state / "router", None, "bench"))[1]
        token = first_token(router, key)
        rows = [
            asyncio.run(measure(region, router_port, key, token, c, args.requests, args.rounds))
            for c in args.concurrency
        ]
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
