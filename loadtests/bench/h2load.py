"""Throughput with h2load (nghttp2-client): HTTP/2 for the proxies, HTTP/1.1
(`--h1`, one connection per concurrent request) for the backend itself.

Runs are timed (`-D`, after `--warm-up-time`), so req/s is the steady state,
not the ramp-up and the tail of a fixed request count.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from loadtests.bench.clients import STREAMS_PER_CONNECTION, Target


def h2load_binary() -> str | None:
    return shutil.which("h2load")


@dataclass(frozen=True, slots=True)
class Throughput:
    requests_per_second: float
    done: int
    succeeded: int
    failed: int  # failed + errored + timed out + non-2xx


def h2load_command(
    binary: str, target: Target, concurrency: int, body_file: Path, seconds: float, warm_up: float
) -> list[str]:
    # h2load takes whole numbers with a unit for durations.
    argv = [
        binary,
        "-D",
        f"{round(seconds * 1000)}ms",
        "--warm-up-time",
        f"{round(warm_up * 1000)}ms",
    ]
    if target.http2:
        connections = max(1, -(-concurrency // STREAMS_PER_CONNECTION))
        argv += ["-c", str(connections), "-m", str(-(-concurrency // connections))]
    else:
        argv += ["--h1", "-c", str(concurrency)]
    argv += ["-d", str(body_file), "-H", "content-type: application/json"]
    if target.authorization:
        argv += ["-H", f"authorization: {target.authorization}"]
    return [*argv, target.url + "/api/generate"]


def parse_output(text: str) -> Throughput:
    """The figures from h2load's summary."""
    rate = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text)
    counts = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
    )
    codes = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if rate is None or counts is None:
        raise RuntimeError(f"h2load printed no summary:\n{text[-800:]}")
    done, succeeded, failed, errored, timeout = (int(g) for g in counts.groups())
    # Status codes are counted only inside the measured window, while a stream
    # that started in the warm-up and ended inside it counts as done: compare
    # error statuses, not 2xx, with the requests done.
    bad_status = sum(int(g) for g in codes.groups()) if codes else 0
    return Throughput(
        float(rate.group(1)),
        done,
        succeeded - bad_status,
        failed + errored + timeout + bad_status,
    )


def run_h2load(
    binary: str, target: Target, concurrency: int, body_file: Path, seconds: float, warm_up: float
) -> Throughput:
    argv = h2load_command(binary, target, concurrency, body_file, seconds, warm_up)
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + warm_up + 120, check=False
    )
    # Never echo argv: it carries the path's token or API key.
    return parse_output(done.stdout)
