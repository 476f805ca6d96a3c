"""One live stack for the fuzz tests, and the properties every case must keep.

    fast sim (the default models; 32 tokens at most, 2000 tokens/s)  --+
    victim sim (model `victim:1b` only; 100 tokens/s)                --+-- region -- router

Both the region and the router trust one state dir's keys, so the tests mint
tokens for either. Two victims stream the whole time on connections of their
own, one to the region and one through the router: each of their streams must
arrive intact (the same text every time, `done_reason: length`), whatever the
fuzzer sends beside them.

What each answer may be is tests/fuzz/oracle.py's; `Live.check` is what the
whole stack must still be after a test.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.auth.keys import SigningKeys
from gateway.auth.tokens import mint
from router.cli import create_key
from router.cluster import RegionPlan, router_command, wait_ready
from tests.e2e import free_port
from tests.fuzz.oracle import judge
from tests.fuzz.peer import Answer, h2_request, http11
from tests.fuzz.strategies import Request
from tests.fuzz.victims import (
    HOST,
    SHORT_VICTIM_TOKENS,
    VICTIM_MODEL,
    VICTIM_TOKENS,
    Victim,
    victim_body,
    victim_text,
)
from workers.launch import start_sim
from workers.process import Child

FAST_SIM = ["--parallel", "32", "--max-queue", "4096", "--load-seconds", "0.01"]
FAST_SIM += ["--prefill-tps", "200000", "--decode-tps", "2000", "--num-predict-cap", "32"]
FAST_SIM += ["--min-tokens", "4", "--max-tokens", "16"]
VICTIM_SIM = ["--models", VICTIM_MODEL, "--parallel", "32", "--load-seconds", "0.01"]
VICTIM_SIM += ["--decode-tps", "100", "--num-predict-cap", "64"]
RSS_GROWTH = 1.5  # at most 50% above the RSS after warm-up


@dataclass
class Process:
    name: str
    port: int
    child: Child
    log: Path
    offset: int = 0  # how far the log has been read for crashes

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.child.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def crashes(self) -> list[str]:
        """Log lines written since the last call that show an unhandled error."""
        with self.log.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data.rpartition(b"\n")[0]
        self.offset += len(complete) + (1 if complete else 0)
        return [line for line in complete.decode(errors="replace").splitlines() if crashed(line)]


def crashed(line: str) -> bool:
    """An error-level JSON line about an unhandled error or with a traceback, or a
    bare traceback (something printed around the logger)."""
    try:
        record = json.loads(line)
    except ValueError:
        return "Traceback" in line
    if not isinstance(record, dict):
        return False
    if record.get("level") not in ("error", "critical"):
        return False
    return "unhandled" in line.lower() or "Traceback" in line


@dataclass(repr=False)
class Live:
    state: Path
    keys: SigningKeys
    region: Process
    router: Process
    api_key: str
    reference: dict[int, str] = field(default_factory=dict)
    victims: list[Victim] = field(default_factory=list)
    warm_rss: dict[str, int] = field(default_factory=dict)
    _tokens: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    _foreign: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def __repr__(self) -> str:  # hypothesis prints it with every failing case: no tokens
        return f"Live(region={self.region.url}, router={self.router.url})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def processes(self) -> dict[str, Process]:
        return {"region": self.region, "router": self.router}

    def port(self, target: str) -> int:
        return self.processes()[target].port

    def token(self, user: str, scope: str = "completions chat") -> str:
        """A token of the shared keys; minted again before its 30 minutes run out."""
        held = self._tokens.get((user, scope))
        if held is None or time.monotonic() - held[1] > 1200:
            token = mint(self.keys.active, user, scope=scope, lifetime=1800)[0]
            held = self._tokens[(user, scope)] = (token, time.monotonic())
        return held[0]

    # --- credentials --------------------------------------------------------

    def authorization(self, request: Request, target: str) -> list[tuple[str, str]]:
        user = f"fuzz-{request.user}"
        kind = request.auth
        route = request.route
        if isinstance(kind, tuple):
            return [("authorization", kind[1])]
        bearer = {
            "valid": f"Bearer {self.token(user)}",
            "empty": "Bearer ",
            "random": "Bearer not-a-token",
            "lowercase-scheme": f"bearer {self.token(user)}",
            "basic": "Basic dXNlcjpwYXNz",
            "oversized": "Bearer " + "a" * 2500 + "." + "b" * 2500 + "." + "c" * 100,
            "three-parts": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
            "foreign-key": f"Bearer {mint(self._foreign, user)[0]}",
            "expired": f"Bearer {mint(self.keys.active, user, now=time.time() - 7200)[0]}",
            "admin-only": f"Bearer {self.token(user, 'admin')}",
            "wrong-scope": "Bearer "
            + self.token(user, "chat" if route.scope == "completions" else "completions"),
            "padded": f"Bearer {self.token(user)}==",
            "api-key": f"Bearer {self.api_key}",
            "unknown-api-key": "Bearer gg_" + "x" * 40,
        }
        if kind == "none":
            return []
        if kind == "twice":
            return [("authorization", bearer["valid"]), ("authorization", bearer["random"])]
        return [("authorization", bearer[kind])]

    # --- requests -----------------------------------------------------------

    def send(self, request: Request, target: str) -> Answer:
        route = request.route
        headers = [*self.authorization(request, target), *request.headers]
        if route.has_body:
            headers.append(("content-type", "application/json"))
        port = self.port(target)
        if request.http2:
            lowered = [(name.lower(), value) for name, value in headers]
            return h2_request(port, route.method, route.path, lowered, request.body)
        return http11(port, route.method, route.path, headers, request.body)

    def judge(self, request: Request, answer: Answer, target: str) -> None:
        """The oracle's rules for one answer (tests/fuzz/oracle.py), then the logs."""
        judge(request, answer, target)
        self.assert_no_crash(f"{target}: {request!r}")

    def assert_no_crash(self, where: str = "") -> None:
        for name, process in self.processes().items():
            lines = process.crashes()
            assert not lines, f"{name} logged an unhandled error ({where}):\n" + "\n".join(lines)

    # --- the whole stack ----------------------------------------------------

    def victim_marks(self) -> list[int]:
        """How many failures each victim has had so far (`check` reports newer ones)."""
        return [len(victim.failures) for victim in self.victims]

    def check(self, label: str, marks: list[int] | None = None) -> None:
        """After a test: both serve, the victims still stream intact (no failure
        since `marks`), no crash was logged, and RSS stayed within 50% of its value
        after warm-up."""
        marks = marks or [0] * len(self.victims)
        for name, process in self.processes().items():
            assert process.child.alive(), f"{name} died during {label}{process.child.log_tail()}"
            health = http11(process.port, "GET", "/healthz", [], b"")
            assert health.status == 200, f"{name} /healthz after {label}: {health}"
        for victim, mark in zip(self.victims, marks, strict=True):
            seen = victim.completed
            deadline = time.monotonic() + 15
            while victim.completed == seen and time.monotonic() < deadline and victim.is_alive():
                time.sleep(0.05)
            failures = victim.failures[mark:]
            assert not failures, f"{victim.name} during {label}: {failures[:5]}"
            assert victim.completed > seen, f"{victim.name} stopped streaming during {label}"
        self.assert_no_crash(label)
        for name, process in self.processes().items():
            now, warm = process.rss_kib(), self.warm_rss[name]
            assert now <= warm * RSS_GROWTH, f"{name} RSS {warm} -> {now} KiB after {label}"


@contextmanager
def live_stack(tmp: Path) -> Iterator[Live]:
    """Start the stack, warm it up, start the victims; stop everything on exit."""
    state = tmp / "state"
    state.mkdir(parents=True, exist_ok=True)
    keys = SigningKeys.load_or_create(state)
    with ExitStack() as stack:
        fast = stack.enter_context(start_sim(FAST_SIM, log_path=tmp / "sim-fast.log"))
        slow = stack.enter_context(start_sim(VICTIM_SIM, log_path=tmp / "sim-victim.log"))
        plan = RegionPlan("us-west", HOST, free_port(), (fast.url, slow.url), slots=32)
        router_port = free_port()
        jwks = f"http://{HOST}:{router_port}/.well-known/jwks.json"
        argv = router_command(sys.executable, HOST, router_port, state, [plan])
        router = _start(stack, "router", argv, router_port, tmp / "router.log", "/healthz")
        argv = plan.command(sys.executable, state, True, jwks=jwks)
        region = _start(stack, "region", argv, plan.port, tmp / "region.log", "/readyz")
        wait_ready(router.url, time.monotonic() + 30)
        api_key = asyncio.run(create_key(state, None, "fuzz-key"))[1]
        live = Live(state, keys, region, router, api_key)
        warm_up(live)
        for name, process in live.processes().items():
            live.warm_rss[name] = process.rss_kib()
        live.victims = [
            # A user each, apart from the same-connection victims': per-user limits
            # (600 requests a minute) are not what these measure.
            Victim(name, live.port(name), live.token(f"victim-{name}"), live.reference)
            for name in ("region", "router")
        ]
        for victim in live.victims:
            victim.start()
            stack.callback(victim.stop)
        yield live


def _start(
    stack: ExitStack, name: str, argv: list[str], port: int, log: Path, path: str
) -> Process:
    child = stack.enter_context(Child.start(name, argv, log_path=log))
    try:
        wait_ready(f"http://{HOST}:{port}", time.monotonic() + 30, path=path)
    except TimeoutError as exc:
        raise child.failure(str(exc)) from None
    return Process(name, port, child, log)


def warm_up(live: Live) -> None:
    """Every route a few times, so caches, pools and the allocator settle before
    the RSS the checks compare against is read; and the victims' reference text."""
    token = live.token("victim")
    for tokens in (VICTIM_TOKENS, SHORT_VICTIM_TOKENS):
        headers = [("authorization", f"Bearer {token}"), ("content-type", "application/json")]
        answer = h2_request(live.region.port, "POST", "/api/generate", headers, victim_body(tokens))
        text, problem = victim_text(answer.body)
        assert answer.status == 200 and problem is None, (answer, problem)
        live.reference[tokens] = text
    bodies = {
        "/api/generate": b'{"model": "starcoder2:3b", "prompt": "def f():"}',
        "/api/chat": b'{"model": "starcoder2:3b", "messages": [{"role": "user", "content": "hi"}]}',
        "/api/show": b'{"model": "starcoder2:3b"}',
        "/v1/completions": b'{"model": "starcoder2:3b", "prompt": "def f():", "max_tokens": 8}',
        "/v1/chat/completions": b'{"model": "starcoder2:3b", "messages": [{"role": "user"}]}',
    }
    gets = ("/api/tags", "/api/ps", "/api/version", "/v1/models", "/")
    for round_ in range(int(os.environ.get("GHOSTGATE_FUZZ_WARMUP", "8"))):
        for target in ("region", "router"):
            headers = [("authorization", f"Bearer {live.token(f'warm-{round_ % 5}')}")]
            for path, body in bodies.items():
                http11(live.port(target), "POST", path, headers, body)
                h2_request(live.port(target), "POST", path, headers, body)
            for path in gets:
                http11(live.port(target), "GET", path, headers, b"")
    time.sleep(0.5)
    live.assert_no_crash("warm-up")
