"""Typing developers against simulated backends: what superseding, the cache and
typing-through save.

    python -m loadtests.typing_replay [--developers 8] [--keystrokes 50] [--seed 1]

Each developer types code in bursts (keystrokes 60-180 ms apart) and pauses
(0.4-1.5 s); their plugin asks for a completion after every keystroke, with
the prefix typed so far and a fixed suffix. Half the plugins cancel the
previous request when they send the next (they close its connection); half
never cancel and read every stream to its end, as many plugins do. At a pause
the developer looks at the completion, and sometimes types its first
characters (accepting it word by word), which is what typing-through serves.

The same scripted traffic (same seeds) runs against the simulated backend (4
parallel slots, 50 tokens/s per slot, like one GPU box) in three setups:
straight to the backend, through Ghostgate with superseding, cache and
typing-through off, and with them on. Reported per setup: tokens the backend
generated, how many of them went to requests nobody waited for, requests the
backend saw, and the time to first token of the completions developers looked
at (p50, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from gateway.auth import SigningKeys, mint
from router.cluster import RegionPlan, wait_ready
from workers.launch import start_sim
from workers.process import Child

MODEL = "starcoder2:3b"
SUFFIX = "\n\n\nif __name__ == '__main__':\n    main()\n"
SNIPPETS = [
    "def parse_config(path):\n    with open(path) as handle:\n        return json.load(handle)\n",
    "class Cache:\n    def __init__(self, size):\n        self.size = size\n"
    "        self.items = {}\n",
    "for index, item in enumerate(items):\n    if item is None:\n        continue\n"
    "    total += item\n",
    "async def fetch(session, url):\n    async with session.get(url) as response:\n"
    "        return await response.text()\n",
]
Result = tuple[str, int, float | None]


class Refused(Exception):
    """The gateway or backend answered with an error status (e.g. 503, queue full)."""


def _quiet(future: asyncio.Future[Result]) -> None:
    # Abandoned requests may fail (503) or be cancelled; nobody waits for them.
    if not future.cancelled():
        future.exception()


@dataclass
class Tally:
    """What one setup's developers saw."""

    requests: int = 0
    looked_at: int = 0
    failed: int = 0
    useful_tokens: int = 0
    ttft: list[float] = field(default_factory=list)


@dataclass
class Developer:
    index: int
    cancels: bool
    rng: random.Random
    headers: dict[str, str]
    text: str = ""
    background: set[asyncio.Future[Result]] = field(default_factory=set)


async def completion(
    session: aiohttp.ClientSession, url: str, dev: Developer
) -> tuple[str, int, float | None]:
    """One completion request: (text, eval_count, time to first token)."""
    body = {
        "model": MODEL,
        "prompt": dev.text,
        "suffix": SUFFIX,
        "stream": True,
        "options": {"num_predict": 48, "temperature": 0.2},
    }
    started = time.perf_counter()
    first: float | None = None
    pieces, count = [], 0
    async with session.post(url + "/api/generate", json=body, headers=dev.headers) as response:
        if response.status != 200:
            raise Refused(response.status)
        async for line in response.content:
            if first is None:
                first = time.perf_counter() - started
            item = json.loads(line)
            pieces.append(item.get("response", ""))
            if item.get("done"):
                count = int(item.get("eval_count") or 0)
    return "".join(pieces), count, first


async def type_along(
    session: aiohttp.ClientSession, url: str, dev: Developer, keystrokes: int, tally: Tally
) -> None:
    target = SNIPPETS[dev.index % len(SNIPPETS)] * 4
    position, shown = 0, ""
    current: asyncio.Future[Result] | None = None
    for stroke in range(keystrokes):
        # Accept part of what was shown now and then (typing through it).
        if shown and dev.rng.random() < 0.35:
            dev.text += shown[: dev.rng.randint(1, min(4, len(shown)))]
            shown = ""
        else:
            dev.text += target[position % len(target)]
            position += 1
        if current is not None and not current.done():
            if dev.cancels:
                current.cancel()  # closes the connection: the plugin cancels
            else:
                dev.background.add(current)  # left to run; the plugin reads it out
                current.add_done_callback(dev.background.discard)
        current = asyncio.ensure_future(completion(session, url, dev))
        current.add_done_callback(_quiet)
        tally.requests += 1
        pause = stroke % 5 == 4
        await asyncio.sleep(dev.rng.uniform(0.4, 1.5) if pause else dev.rng.uniform(0.06, 0.18))
        if pause:
            try:
                text, count, ttft = await asyncio.wait_for(asyncio.shield(current), 10)
            except (TimeoutError, aiohttp.ClientError, Refused):
                tally.failed += 1  # a 503 from a full queue, or no answer in 10 s
                continue
            tally.looked_at += 1
            tally.useful_tokens += count
            if ttft is not None:
                tally.ttft.append(ttft)
            shown = text
    if current is not None:
        current.cancel()
    await asyncio.gather(*dev.background, return_exceptions=True)


async def run_setup(url: str, tokens: list[str] | None, args: argparse.Namespace) -> Tally:
    tally = Tally()
    developers = []
    for i in range(args.developers):
        headers = {"User-Agent": "vscode/1.95 ghostgate-typing-bench"}
        if tokens:
            headers["Authorization"] = f"Bearer {tokens[i]}"
        developers.append(
            Developer(
                i, cancels=i % 2 == 0, rng=random.Random(args.seed * 1000 + i), headers=headers
            )
        )
    # One connection per request, as plugins cancelling by closing need.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(
            *(type_along(session, url, d, args.keystrokes, tally) for d in developers)
        )
    return tally


def sim_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/sim/stats", timeout=5) as response:
        stats: dict[str, int] = json.loads(response.read())
        return stats


def gateway_counts(url: str) -> dict[str, int]:
    """Superseded requests and answers from the cache or typing-through, from /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    counts = {"superseded": 0, "from_memory": 0}
    for line in lines:
        value = line.rsplit(" ", 1)[-1]
        if line.startswith('ghostgate_cancellations_total{reason="superseded"'):
            counts["superseded"] += int(float(value))
        elif line.startswith("ghostgate_cache_hits_total{"):
            counts["from_memory"] += int(float(value))
    return counts


def reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/sim/reset", method="POST"), timeout=5)


def measure(
    name: str, target: str, sim_url: str, tokens: list[str] | None, args: argparse.Namespace
) -> dict[str, object]:
    reset(sim_url)
    tally = asyncio.run(run_setup(target, tokens, args))
    time.sleep(1.5)  # let abandoned streams finish or die
    stats = sim_stats(sim_url)
    generated = stats["tokens_generated"]
    gateway = gateway_counts(target) if target != sim_url else {}
    ttft = sorted(tally.ttft)
    return {
        "setup": name,
        "client_requests": tally.requests,
        "looked_at": tally.looked_at,
        "failed": tally.failed,
        "superseded": gateway.get("superseded", "-"),
        "answered_from_memory": gateway.get("from_memory", "-"),
        "backend_requests": stats["requests"],
        "backend_tokens": generated,
        "abandoned_tokens": max(0, generated - tally.useful_tokens),
        "useful_tokens": tally.useful_tokens,
        "ttft_p50_ms": round(statistics.median(ttft) * 1000, 1) if ttft else None,
        "ttft_p99_ms": round(ttft[min(len(ttft) - 1, int(len(ttft) * 0.99))] * 1000, 1)
        if ttft
        else None,
    }


def table(rows: list[dict[str, object]]) -> str:
    head = [
        "setup",
        "client_requests",
        "looked_at",
        "failed",
        "superseded",
        "answered_from_memory",
        "backend_requests",
        "backend_tokens",
        "abandoned_tokens",
        "useful_tokens",
        "ttft_p50_ms",
        "ttft_p99_ms",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(row[h]) for h in head) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.typing_replay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--developers", type=int, default=8)
    parser.add_argument("--keystrokes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        state = Path(tmp)
        keys = SigningKeys.load_or_create(state)
        tokens = [mint(keys.active, f"dev{i}", lifetime=1800)[0] for i in range(args.developers)]
        sim = stack.enter_context(
            start_sim(
                ["--parallel", "4", "--decode-tps", "50", "--load-seconds", "0"],
                log_path=state / "sim.log",
            )
        )
        rows.append(measure("direct to the backend", sim.url, sim.url, None, args))
        for name, flags in (
            ("Ghostgate, savings off", ["--no-supersede", "--no-cache", "--no-typing-through"]),
            ("Ghostgate", []),
        ):
            plan = RegionPlan("bench", "127.0.0.1", 18650, (sim.url,), 4)
            argv_ = [*plan.command(sys.executable, state, True), *flags]
            with Child.start("region", argv_, log_path=state / "region.log"):
                wait_ready(plan.url, time.monotonic() + 20)
                rows.append(measure(name, plan.url, sim.url, tokens, args))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
