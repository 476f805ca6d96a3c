"""The benchmark's phases, in order, against a running `Stack`:

1. `rounds` times, for each concurrency, for each path (the order rotates,
   so no path always runs first): throughput with h2load, with the CPU time
   each process spent meanwhile; then time to first token and inter-token
   gaps with our own clients. Rounds are pooled: requests over seconds, CPU
   over requests, percentiles over every sample;
2. cancel latency per path: streams reset mid-generation, matched with the
   moment the backend's connection closed (`/sim/closes`);
3. one HTTP/2 connection carrying many requests, 100 streams at a time;
4. optionally, the region's memory holding thousands of streams at once.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtests.bench.clients import (
    STREAMS_PER_CONNECTION,
    Sample,
    Target,
    cancel_times,
    long_connection,
    stream_samples,
)
from loadtests.bench.h2load import h2load_command, parse_output, run_h2load
from loadtests.bench.procs import CpuMeter, usage
from loadtests.bench.stack import Stack

# Which processes each path goes through; the first is "the proxy" of the path.
PROCESSES = {
    "direct": ("backend",),
    "region": ("region", "backend"),
    "router": ("router", "region", "backend"),
    "nginx": ("nginx", "backend"),
    "litellm": ("litellm", "backend"),
}


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure; `--quick` and `--smoke` are smaller plans."""

    concurrencies: tuple[int, ...] = (1, 64, 200)
    rounds: int = 3  # every path and concurrency this often, interleaved
    h2load_waves: int = 10  # h2load requests per concurrent stream, per round
    min_samples: int = 40  # TTFT samples per path, concurrency and round, at least
    waves: int = 2  # ... and at least this many rounds of `concurrency` requests
    cancels: int = 200
    cancel_concurrency: int = 10
    long_requests: int = 10_000
    long_paths: tuple[str, ...] = ("region", "router")
    rss_streams: int = 2000


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (`q` in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(min(rank, len(ordered))) - 1]


@dataclass
class PathRun:
    """One path at one concurrency, summed over the rounds."""

    path: str
    concurrency: int
    requests_per_second: float | None = None
    h2load_requests: int = 0
    h2load_failed: int = 0
    samples: int = 0
    failed: int = 0
    ttft_p50_ms: float = float("nan")
    ttft_p99_ms: float = float("nan")
    gap_p50_ms: float = float("nan")
    gap_p99_ms: float = float("nan")
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    # Accumulated over the rounds, summarised by `finish`.
    h2load_seconds: float = field(default=0.0, repr=False)
    cpu_seconds: dict[str, float] = field(default_factory=dict, repr=False)
    ttft: list[float] = field(default_factory=list, repr=False)
    gaps: list[float] = field(default_factory=list, repr=False)

    def finish(self) -> None:
        if self.h2load_seconds > 0:
            self.requests_per_second = self.h2load_requests / self.h2load_seconds
        if self.h2load_requests:
            self.cpu_ms_per_request = {
                name: seconds * 1000 / self.h2load_requests
                for name, seconds in self.cpu_seconds.items()
            }
        self.ttft_p50_ms, self.ttft_p99_ms = percentile(self.ttft, 50), percentile(self.ttft, 99)
        self.gap_p50_ms, self.gap_p99_ms = percentile(self.gaps, 50), percentile(self.gaps, 99)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("h2load_seconds", "cpu_seconds", "ttft", "gaps"):
            data.pop(name)
        return data


def measure_throughput(stack: Stack, run: PathRun, plan: Plan, binary: str, bodies: Path) -> None:
    """One h2load run of `plan.h2load_waves` requests per stream, after a warm-up
    wave (so the proxy's backend connections are open), CPU metered around it."""
    target = stack.targets[run.path]
    body_file = body_path(bodies, target)
    run_h2load(binary, target, run.concurrency, body_file, run.concurrency)
    meter = CpuMeter({name: stack.pids[name] for name in PROCESSES[run.path]})
    meter.start()
    result = run_h2load(
        binary, target, run.concurrency, body_file, run.concurrency * plan.h2load_waves
    )
    spent = meter.stop()
    run.h2load_requests += result.done
    run.h2load_failed += result.failed
    if result.requests_per_second:
        run.h2load_seconds += result.done / result.requests_per_second
    for name, used in spent.items():
        run.cpu_seconds[name] = run.cpu_seconds.get(name, 0.0) + used.cpu_seconds
        run.rss_mb[name] = max(run.rss_mb.get(name, 0.0), used.rss_mb)


def measure_latency(stack: Stack, run: PathRun, plan: Plan) -> None:
    total = max(plan.min_samples, run.concurrency * plan.waves)
    samples: list[Sample] = asyncio.run(
        stream_samples(stack.targets[run.path], run.concurrency, total)
    )
    good = [s for s in samples if s.ok]
    run.samples += len(good)
    run.failed += len(samples) - len(good)
    run.ttft += [s.ttft * 1000 for s in good]
    run.gaps += [gap * 1000 for s in good for gap in s.gaps]


def measure_cancels(stack: Stack, path: str, plan: Plan) -> dict[str, Any]:
    """RST_STREAM (or close) at the client -> the backend's connection closed."""
    _post(stack.backend_url + "/sim/reset")
    sent = asyncio.run(
        cancel_times(stack.targets[path], plan.cancels, plan.cancel_concurrency, path)
    )
    time.sleep(0.5)  # anything that closes at all closes well within this
    closes = json.loads(_get(stack.backend_url + "/sim/closes"))["closes"]
    closed_at = {entry["prompt"]: entry["closed_at"] for entry in closes}
    delays = [(closed_at[p] - t) * 1000 for p, t in sent.items() if p in closed_at and t]
    return {
        "path": path,
        "cancels": len(sent),
        "backend_closed": len(delays),
        "p50_ms": percentile(delays, 50),
        "p99_ms": percentile(delays, 99),
        "max_ms": max(delays) if delays else float("nan"),
    }


def measure_long_connection(stack: Stack, path: str, plan: Plan) -> dict[str, Any]:
    result = asyncio.run(
        long_connection(stack.targets[path], plan.long_requests, STREAMS_PER_CONNECTION)
    )
    return {"path": path, "concurrent_streams": STREAMS_PER_CONNECTION, **asdict(result)}


def measure_many_streams(stack: Stack, plan: Plan, binary: str, body_file: Path) -> dict[str, Any]:
    """The region's memory while it holds `plan.rss_streams` streams at once
    (h2load: 20 connections of 100 streams), sampled every 100 ms."""
    target = stack.targets["region"]
    requests = plan.rss_streams * 2
    argv = h2load_command(binary, target, plan.rss_streams, body_file, requests)
    before = usage(stack.pids["region"])
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak_rss, peak_inflight = 0.0, 0
    while process.poll() is None:
        peak_rss = max(peak_rss, usage(stack.pids["region"]).rss_mb)
        ready = json.loads(_get(target.url + "/readyz"))
        peak_inflight = max(peak_inflight, int(ready.get("inflight", 0)))
        time.sleep(0.1)
    done = parse_output(process.communicate()[0])
    return {
        "streams": plan.rss_streams,
        "requests": requests,
        "succeeded": done.succeeded,
        "peak_in_flight": peak_inflight,
        "rss_before_mb": before.rss_mb,
        "peak_rss_mb": peak_rss,
    }


def body_path(directory: Path, target: Target) -> Path:
    """Where h2load reads the request body for `target` (one file per dialect)."""
    return directory / ("openai.json" if target.openai else "ollama.json")


def run_all(stack: Stack, plan: Plan, binary: str, log: Any) -> dict[str, Any]:
    paths = [p for p in PROCESSES if p in stack.targets]
    runs = {(p, c): PathRun(p, c) for c in plan.concurrencies for p in paths}
    with tempfile.TemporaryDirectory(prefix="bench-bodies-") as bodies_dir:
        bodies = Path(bodies_dir)
        for target in stack.targets.values():
            body_path(bodies, target).write_bytes(target.body())
        step = 0
        for _ in range(plan.rounds):
            for concurrency in plan.concurrencies:
                # Rotate the order, so no path always runs first (or last).
                order = paths[step % len(paths) :] + paths[: step % len(paths)]
                step += 1
                for path in order:
                    run = runs[(path, concurrency)]
                    if concurrency > 1:
                        measure_throughput(stack, run, plan, binary, bodies)
                    measure_latency(stack, run, plan)
        for run in runs.values():
            run.finish()
            log(_progress(run))
        cancels = [measure_cancels(stack, path, plan) for path in paths]
        log(f"cancels: {[(c['path'], round(c['p99_ms'], 2)) for c in cancels]}")
        long = [measure_long_connection(stack, p, plan) for p in plan.long_paths if p in paths]
        log(f"long connection: {long}")
        many = (
            measure_many_streams(stack, plan, binary, body_path(bodies, stack.targets["region"]))
            if plan.rss_streams
            else None
        )
        log(f"many streams: {many}")
    return {
        "runs": [run.summary() for run in runs.values()],
        "cancel": cancels,
        "long_connection": long,
        "many_streams": many,
    }


def _progress(run: PathRun) -> str:
    rps = f"{run.requests_per_second:.1f} req/s" if run.requests_per_second else "-"
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in run.cpu_ms_per_request.items())
    return (
        f"{run.path:>7} c={run.concurrency:<4} {rps:>12}  ttft p50 {run.ttft_p50_ms:.2f} "
        f"p99 {run.ttft_p99_ms:.2f} ms  gap p99 {run.gap_p99_ms:.2f} ms  cpu ms/req: {cpu}"
        f"  failed {run.failed + run.h2load_failed}"
    )


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: bytes = response.read()
        return data


def _post(url: str) -> None:
    request = urllib.request.Request(url, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
