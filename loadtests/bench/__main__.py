"""`python -m loadtests.bench` (or `ghostgate bench`): what the gateway's hop costs.

    python -m loadtests.bench [--quick | --smoke] [--out DIR] [--concurrency N ...]
                              [--region-arg=FLAG ...] [--no-nginx] [--no-litellm]

Starts a simulated Ollama worker in fast mode (20 NDJSON tokens, 20 ms apart),
a region proxy and the router in front of it, nginx and LiteLLM's proxy when
installed, then measures each path against the same worker: straight to the
backend, through the region, through the router and the region, through nginx
(HTTP/2 in, pooled HTTP/1.1 out), through LiteLLM (OpenAI's /v1/completions,
HTTP/1.1). Writes DIR/bench.json, DIR/bench.md (the tables and the targets)
and DIR/bench.png (time to first token against concurrency). Default DIR:
results/bench. `make bench` installs nginx and LiteLLM first.

The full run (about 20 minutes, a third of it LiteLLM's) is the README's
table: three interleaved rounds per path and concurrency, 10,000 requests on
one connection and 2,000 streams at once. `--quick` measures less of each.
`--smoke` is the test suite's: seconds, and no target is meaningful.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from loadtests.bench import report
from loadtests.bench.h2load import h2load_binary
from loadtests.bench.runner import Plan, run_all
from loadtests.bench.stack import start_stack

QUICK = Plan(
    rounds=1,
    h2load_waves=6,
    min_samples=15,
    waves=2,
    cancels=50,
    long_requests=1200,
    long_paths=("region",),
    rss_streams=0,
)
SMOKE = Plan(
    concurrencies=(4,),
    rounds=1,
    h2load_waves=2,
    min_samples=4,
    waves=1,
    cancels=6,
    cancel_concurrency=3,
    long_requests=30,
    long_paths=("region",),
    rss_streams=0,
)


def machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    versions = {
        name: metadata.version(name) for name in ("hypercorn", "aiohttp", "uvloop", "h2", "fastapi")
    }
    nginx = shutil.which("nginx")
    if nginx:
        done = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
        versions["nginx"] = done.stderr.strip().rsplit("/", 1)[-1]
    return {
        "cores": cores,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "summary": f"{cores} cores ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}",
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a few minutes, fewer samples")
    size.add_argument("--smoke", action="store_true", help="seconds: the test suite's")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--concurrency", type=int, nargs="+", help="instead of 1 64 200")
    parser.add_argument(
        "--region-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag for the region process, e.g. --region-arg=--log-level=warning",
    )
    parser.add_argument("--no-nginx", action="store_true", help="leave nginx out")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = SMOKE if args.smoke else QUICK if args.quick else Plan()
    if args.concurrency:
        plan = replace(plan, concurrencies=tuple(args.concurrency))
    binary = h2load_binary()
    if binary is None:
        print("bench: h2load is missing (apt-get install nghttp2-client)", file=sys.stderr)
        return 2
    started = time.monotonic()
    slots = max(*plan.concurrencies, plan.rss_streams, 100) + 8
    with tempfile.TemporaryDirectory(prefix="ghostgate-bench-") as tmp, ExitStack() as stack:
        running = start_stack(
            stack, Path(tmp), slots, args.region_arg, not args.no_nginx, not args.no_litellm
        )
        if args.no_nginx:
            running.skipped["nginx"] = "left out (--no-nginx)"
        if args.no_litellm:
            running.skipped["litellm"] = "left out (--no-litellm)"
        measured = run_all(running, plan, binary, lambda line: print(line, flush=True))
    command = "python -m loadtests.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": command.strip(),
        "machine": machine(),
        "plan": asdict(plan),
        "region_args": args.region_arg,
        "skipped": running.skipped,
        "seconds": round(time.monotonic() - started, 1),
        **measured,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    text = report.markdown(result)
    (args.out / "bench.md").write_text(text)
    charted = report.chart(result, args.out / "bench.png")
    print(text)
    print(f"written: {args.out}/bench.json, bench.md" + (", bench.png" if charted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
