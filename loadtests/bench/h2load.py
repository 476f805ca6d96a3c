"""Throughput with h2load (nghttp2-client): HTTP/2 for the proxies, HTTP/1.1
(`--h1`, one connection per concurrent request) for the backend itself.

Runs are a number of requests (`-n`), not a duration: every stream takes the
same 0.4 s here, so a timed window counts whole waves of `concurrency`
requests and its req/s moves in steps of several percent; total requests over
total time does not. A cut-off timed run also resets the streams in flight,
which makes a proxy drop and reopen its backend connections.
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
    failed: int  # failed + errored + timed out + 4xx/5xx


def h2load_command(
    binary: str, target: Target, concurrency: int, body_file: Path, requests: int
) -> list[str]:
    argv = [binary, "-n", str(requests)]
    if target.http2:
        connections = max(1, -(-concurrency // STREAMS_PER_CONNECTION))
        argv += ["-c", str(connections), "-m", str(-(-concurrency // connections))]
    else:
        argv += ["--h1", "-c", str(concurrency)]
    argv += ["-d", str(body_file), "-H", "content-type: application/json"]
    if target.authorization:
        argv += ["-H", f"authorization: {target.authorization}"]
    return [*argv, target.url + target.path]


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
    bad_status = sum(int(g) for g in codes.groups()) if codes else 0
    return Throughput(
        float(rate.group(1)),
        done,
        succeeded - bad_status,
        failed + errored + timeout + bad_status,
    )


def run_h2load(
    binary: str, target: Target, concurrency: int, body_file: Path, requests: int
) -> Throughput:
    argv = h2load_command(binary, target, concurrency, body_file, requests)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    # Never echo argv: it carries the path's token or API key.
    return parse_output(done.stdout)
