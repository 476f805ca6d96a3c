"""The soak run: `python -m loadtests.soak --minutes 60` (`make soak`).

It starts a simulated worker, a region and the router as the benchmark does
(loadtests/bench/stack.py: the worker's fast mode, per-user limits off) and, for
the whole run, at once:

    typing      developers as in the locust scenario (loadtests/typist.py): a
                completion per keystroke through their region, reset (RST_STREAM)
                when they type on, or left for the gateway to supersede
    reconnects  each developer drops its HTTP/2 connection every few bursts
    closes      HTTP/1.1 generations whose socket is closed after the first bytes
    bad input   a steady trickle of the fuzz tests' worst cases: bad tokens,
                malformed bodies, and PING floods that must end in GOAWAY

Every `--sample-seconds` it samples, for the region and the router, RSS, open
file descriptors and, from /readyz (asked with an `admin` token, which the full
report needs), the asyncio task count, slots in use, queue length and live
groups; the router's /readyz reports no tasks, so its series is left out.
Samples of the first `--warmup` share of the run are shown but not judged.

The run fails (exit 1) when a series grows: its least-squares slope times the
judged span exceeds a threshold (RSS +10% of its first judged value, fds +20,
tasks +50); when fds or tasks, idle again after the load, exceed their idle
figures from before it by as much; when slots, queue or groups are not back to
0 once the load stops; when anything answered a 5xx other than a backend's
502/503/504, a bad token was let in, or a flood was not cut. It prints a table
and writes every sample to a JSON file (`--out`, default results/soak.json).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hyperframe.frame import PingFrame

from gateway.auth import SigningKeys, mint
from loadtests.bench.procs import parse_status_kib
from loadtests.bench.stack import start_stack
from loadtests.typist import (
    CODE,
    LOCATIONS,
    Attempt,
    Developer,
    LoopThread,
    fetch_grant,
    typing_burst,
)

# The worst of what the fuzz tests send (tests/fuzz/strategies.py draws from these too).
BAD_TOKENS: tuple[str, ...] = (
    "",
    "Bearer ",
    "Bearer not-a-token",
    "Basic dXNlcjpwYXNz",
    "Bearer " + "a" * 5000,
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    "Bearer gg_" + "x" * 40,
    "Bearer a.b.c==",
)
BAD_BODIES: tuple[bytes, ...] = (
    b"",
    b"{",
    b"[]",
    b"\xff\xfe\x00",
    b'{"model": "starcoder2:3b", "prompt": 5}',
    b'{"model": "starcoder2:3b", "prompt": "x", "options": {"num_predict": "many"}}',
    b'{"model": "starcoder2:3b", "messages": [{"role": 1}]}',
    b'{"model": "starcoder2:3b", "prompt": "x", "max_tokens": -1, "n": 99}',
    b"[" * 50_000 + b"]" * 50_000,
    b'{"model": "' + b"m" * 100_000 + b'", "prompt": "x"}',
)
BAD_PATHS = ("/api/generate", "/api/chat", "/v1/completions", "/v1/chat/completions", "/api/show")
BACKEND_STATUSES = (502, 503, 504)


@dataclass(frozen=True, slots=True)
class Thresholds:
    rss_share: float = 0.10  # of the first judged RSS
    fds: float = 20
    tasks: float = 50


@dataclass(frozen=True, slots=True)
class Verdict:
    series: str
    first: float
    last: float
    slope_per_minute: float
    growth: float  # slope times the judged span
    limit: float
    ok: bool


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0 with fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def judge(
    samples: Sequence[dict[str, Any]], warmup_seconds: float, limits: Thresholds
) -> list[Verdict]:
    """One verdict per series (`process.metric`) over the samples after warm-up."""
    judged = [s for s in samples if s["t"] >= warmup_seconds] or list(samples[-2:])
    verdicts = []
    names = sorted({k for s in judged for k, v in s.items() if k != "t" and v is not None})
    for name in names:
        points = [(s["t"] / 60, float(s[name])) for s in judged if s.get(name) is not None]
        if not points:
            continue
        per_minute = slope(points)
        growth = per_minute * (points[-1][0] - points[0][0])
        metric = name.split(".", 1)[1]
        limit = {
            "rss_kib": limits.rss_share * points[0][1],
            "fds": limits.fds,
            "tasks": limits.tasks,
        }.get(metric, float("inf"))
        verdicts.append(
            Verdict(name, points[0][1], points[-1][1], per_minute, growth, limit, growth <= limit)
        )
    return verdicts


def table(verdicts: Sequence[Verdict]) -> str:
    rows = ["| series | first | last | slope/min | growth | limit | ok |", "|" + "---|" * 7]
    for v in verdicts:
        limit = "-" if v.limit == float("inf") else f"{v.limit:.1f}"
        rows.append(
            f"| {v.series} | {v.first:.0f} | {v.last:.0f} | {v.slope_per_minute:+.2f} "
            f"| {v.growth:+.1f} | {limit} | {'yes' if v.ok else 'NO'} |"
        )
    return "\n".join(rows)


class Tally:
    """Counts from every activity thread, and the first few surprises."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []

    def add(self, what: str, problem: str = "") -> None:
        with self._lock:
            self.counts[what] += 1
            if problem and len(self.problems) < 20:
                self.problems.append(f"{what}: {problem}")


@dataclass
class Stack:
    router: str
    region_port: int
    router_port: int
    pids: dict[str, int]
    api_key: str
    keys: SigningKeys

    def token(self, user: str, scope: str = "completions chat") -> str:
        return mint(self.keys.active, user, scope=scope, lifetime=1800)[0]


# --- activities ------------------------------------------------------------------


def typing(
    stop: threading.Event, loop: LoopThread, stack: Stack, number: int, tally: Tally
) -> None:
    """One developer (the locust scenario's `TypingDeveloper`, on a thread)."""
    rng = random.Random(number)
    developer = Developer(loop, f"soak-dev-{number}")
    cancels = rng.random() >= 0.25
    position, text, grant, bursts = rng.randrange(len(CODE)), "", None, 0
    in_flight: list[Attempt] = []
    while not stop.is_set():
        if grant is None or grant.due(time.monotonic()):
            try:
                grant = fetch_grant(stack.router, stack.api_key, LOCATIONS[number % 4])
            except (OSError, ValueError, KeyError) as exc:
                tally.add("token_failed", repr(exc))
                stop.wait(1.0)
                continue
        for stroke in typing_burst(rng, CODE, position):
            position += 1
            text = (text + stroke.text)[-2000:]
            for attempt in in_flight if cancels else ():
                if not attempt.done and not attempt.cancel_requested:
                    developer.cancel(attempt)
            in_flight.append(developer.complete(grant, text))
            if stop.wait(stroke.gap):
                break
            in_flight = _finished(in_flight, tally)
        bursts += 1
        if bursts % 5 == 0:  # reconnect: a new HTTP/2 connection for the next burst
            _settle(in_flight, developer, tally, 3.0)
            in_flight = []
            developer.close()  # a fresh one: the old one's close may still be under way
            developer = Developer(loop, f"soak-dev-{number}")
            tally.add("reconnects")
    _settle(in_flight, developer, tally, 3.0)
    developer.close()


def _finished(in_flight: list[Attempt], tally: Tally) -> list[Attempt]:
    still = []
    for attempt in in_flight:
        if not attempt.done:
            still.append(attempt)
            continue
        tally.add(f"completion_{attempt.outcome}")
        if attempt.outcome == "failed":
            server = _server_error(attempt.error)
            tally.add("server_errors" if server else "completion_failures", attempt.error[:200])
    return still


def _settle(in_flight: list[Attempt], developer: Developer, tally: Tally, within: float) -> None:
    for attempt in in_flight:
        if not attempt.done:
            developer.cancel(attempt)
    deadline = time.monotonic() + within
    while any(not a.done for a in in_flight) and time.monotonic() < deadline:
        time.sleep(0.02)
    _finished(in_flight, tally)


def _server_error(error: str) -> bool:
    if not error.startswith("HTTP 5"):
        return False
    return not any(error.startswith(f"HTTP {s}") for s in BACKEND_STATUSES)


def http11(
    port: int, method: str, path: str, auth: str, body: bytes, *, close_after: int = 0
) -> int:
    """A raw HTTP/1.1 request; the status, or 0 if none came. With `close_after`,
    the socket is closed once that many body bytes arrived (a cancel)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: ghostgate\r\nConnection: close\r\n"
    if auth:
        head += f"Authorization: {auth}\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(head.encode() + body)
            while chunk := sock.recv(65536):
                received += chunk
                _, _, rest = received.partition(b"\r\n\r\n")
                if close_after and len(rest) >= close_after:
                    break
        except OSError:
            pass
    parts = received.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def closes(stop: threading.Event, stack: Stack, tally: Tally) -> None:
    """HTTP/1.1 generations closed after their first bytes, to the region and the router."""
    body = json.dumps({"model": "starcoder2:3b", "prompt": "def soak():", "stream": True}).encode()
    number = 0
    while not stop.wait(0.4):
        number += 1
        port, auth = (stack.region_port, f"Bearer {stack.token('soak-h1')}")
        if number % 2:
            port, auth = stack.router_port, f"Bearer {stack.api_key}"
        status = _safe(http11, port, "POST", "/api/generate", auth, body, close_after=40)
        tally.add("h1_closes" if status == 200 else f"h1_close_status_{status}")


def bad_input(stop: threading.Event, stack: Stack, tally: Tally) -> None:
    """Bad tokens and malformed bodies, 4 a second; a PING flood every 5 s."""
    rng = random.Random(7)
    number = 0
    while not stop.wait(0.25):
        number += 1
        port = stack.region_port if number % 2 else stack.router_port
        if number % 20 == 0:
            cut = _safe(flood, port)
            tally.add("floods_cut" if cut else "floods_not_cut", "" if cut else f"port {port}")
            continue
        if number % 3 == 0:
            kind, auth = "bad_token", rng.choice(BAD_TOKENS)
            body = b'{"model": "starcoder2:3b", "prompt": "x"}'
        else:
            kind, auth = "bad_body", f"Bearer {stack.token(f'soak-bad-{number % 10}')}"
            body = rng.choice(BAD_BODIES)  # some are fine for some routes: a 200 is no surprise
        status = _safe(http11, port, "POST", rng.choice(BAD_PATHS), auth, body)
        tally.add(f"{kind}_{status // 100}xx")
        if status >= 500 and status not in BACKEND_STATUSES:
            tally.add("server_errors", f"bad input -> {status} ({body[:60]!r})")


def flood(port: int, frames: int = 300) -> bool:
    """PINGs until the server sends GOAWAY; True if it did."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(conn.data_to_send())
        try:
            sock.sendall(
                b"".join(
                    PingFrame(0, opaque_data=n.to_bytes(8, "big")).serialize()
                    for n in range(frames)
                )
            )
        except OSError:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except OSError:
                return False
            if not data:
                return False
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                return False
            if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
                return True
    return False


def _safe(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`call`'s result, or 0 when the socket failed (counted, not raised)."""
    try:
        return call(*args, **kwargs)
    except OSError:
        return 0


# --- sampling ----------------------------------------------------------------------


def proc_figures(pid: int) -> tuple[int, int]:
    """(VmRSS in KiB, open file descriptors) of `pid`."""
    status = Path(f"/proc/{pid}/status").read_text()
    return parse_status_kib(status, "VmRSS"), len(os.listdir(f"/proc/{pid}/fd"))


def readyz(port: int, token: str) -> dict[str, Any]:
    """The full /readyz report: asked with an `admin` token, which a restricted
    /readyz needs to show its figures; an answer of 503 still has them."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/readyz", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            report: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            report = json.loads(exc.read())
    return report


def sample(stack: Stack, started: float, admin: str) -> dict[str, Any]:
    figures: dict[str, Any] = {"t": round(time.monotonic() - started, 2)}
    for name in ("region", "router"):
        figures[f"{name}.rss_kib"], figures[f"{name}.fds"] = proc_figures(stack.pids[name])
    report = readyz(stack.region_port, admin)
    figures["region.tasks"] = report.get("tasks")
    figures["region.inflight"] = report.get("inflight")
    figures["region.queued"] = report.get("queued")
    figures["region.groups"] = report.get("groups_live")
    figures["router.tasks"] = readyz(stack.router_port, admin).get("tasks")
    return figures


def drained(stack: Stack, admin: str, within: float) -> dict[str, Any]:
    """Wait for slots, queue and groups to reach 0; the region's last figures."""
    deadline = time.monotonic() + within
    while True:
        report = readyz(stack.region_port, admin)
        left = {k: report.get(k) for k in ("inflight", "queued", "groups_live")}
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def run(args: argparse.Namespace, state: Path) -> int:
    seconds = args.minutes * 60
    with ExitStack() as exits:
        started = start_stack(exits, state, args.slots, [], with_nginx=False, with_litellm=False)
        router = started.targets["router"]
        stack = Stack(
            router=f"http://{router.host}:{router.port}",
            region_port=started.targets["region"].port,
            router_port=router.port,
            pids=started.pids,
            api_key=router.authorization.removeprefix("Bearer "),
            keys=SigningKeys.load_or_create(state),
        )
        loop = LoopThread()
        loop.start()
        exits.callback(loop.stop)
        result = soak(stack, loop, args, seconds)
    print(table([Verdict(**v) for v in result["verdicts"]]))
    print("activity: " + ", ".join(f"{k}={v}" for k, v in sorted(result["activity"].items())))
    for problem in result["problems"]:
        print("  " + problem)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    for failure in result["failures"]:
        print(f"FAIL: {failure}")
    print("soak: " + ("FAILED" if result["failures"] else "passed"))
    return 1 if result["failures"] else 0


def soak(
    stack: Stack, loop: LoopThread, args: argparse.Namespace, seconds: float
) -> dict[str, Any]:
    """Idle figures, then the load with its samples, then idle figures again."""
    admin = stack.token("soak-admin", scope="admin")
    before = sample(stack, time.monotonic(), admin)
    stop, tally = threading.Event(), Tally()
    work: list[tuple[Callable[..., None], tuple[Any, ...]]] = [
        (typing, (stop, loop, stack, n, tally)) for n in range(args.developers)
    ]
    work += [(closes, (stop, stack, tally)), (bad_input, (stop, stack, tally))]
    threads = [threading.Thread(target=f, args=a, daemon=True) for f, a in work]
    for thread in threads:
        thread.start()
    started, samples = time.monotonic(), []
    print(f"soak: {args.minutes:g} min, a sample every {args.sample_seconds:g} s", flush=True)
    while True:
        samples.append(sample(stack, started, admin))
        print(json.dumps(samples[-1]), flush=True)
        left = seconds - (time.monotonic() - started)
        if left <= 0:
            break
        time.sleep(min(args.sample_seconds, left))
    stop.set()
    for thread in threads:
        thread.join(15)
    left_over = drained(stack, admin, 15)
    after = sample(stack, started, admin)
    verdicts = judge(samples, seconds * args.warmup, Thresholds())
    return {
        "minutes": args.minutes,
        "sample_seconds": args.sample_seconds,
        "warmup_seconds": seconds * args.warmup,
        "idle_before": before,
        "samples": samples,
        "idle_after": after,
        "verdicts": [asdict(v) for v in verdicts],
        "left_after_load": left_over,
        "activity": dict(tally.counts),
        "problems": tally.problems,
        "failures": failures(verdicts, before, after, left_over, tally, stack),
    }


def failures(
    verdicts: Sequence[Verdict],
    before: dict[str, Any],
    after: dict[str, Any],
    left_over: dict[str, Any],
    tally: Tally,
    stack: Stack,
) -> list[str]:
    """Everything that fails the run, in words."""
    found = [f"{v.series} grew {v.growth:+.1f} (limit {v.limit:.1f})" for v in verdicts if not v.ok]
    limits = Thresholds()
    for name, limit in (("fds", limits.fds), ("tasks", limits.tasks)):
        for process in ("region", "router"):
            key = f"{process}.{name}"
            if before.get(key) is not None and after.get(key) is not None:
                if after[key] - before[key] > limit:
                    found.append(f"{key}: {before[key]} idle before, {after[key]} idle after")
    found += [f"region {k} is {v} after the load stopped" for k, v in left_over.items() if v]
    for what, words in (
        ("server_errors", "answers were a 5xx other than 502/503/504"),
        ("floods_not_cut", "floods were not cut by GOAWAY"),
        ("bad_token_2xx", "bad tokens were let in"),
    ):
        if tally.counts[what]:
            found.append(f"{tally.counts[what]} {words}")
    found += [
        f"{name} died" for name, pid in stack.pids.items() if not Path(f"/proc/{pid}").exists()
    ]
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="how long (fractions allowed)")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--developers", type=int, default=8)
    parser.add_argument("--slots", type=int, default=8, help="the worker's and region's slots")
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the run not judged")
    parser.add_argument("--out", type=Path, default=Path("results/soak.json"))
    parser.add_argument("--state", type=Path, help="keep keys and logs here (default: a temp dir)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.state is not None:
        args.state.mkdir(parents=True, exist_ok=True)
        return run(args, args.state)
    with tempfile.TemporaryDirectory(prefix="ghostgate-soak-") as state:
        return run(args, Path(state))


if __name__ == "__main__":
    sys.exit(main())
