"""The processes under test, started as `ghostgate up` starts them, on free ports:

    simulated backend (fast mode: 20 NDJSON tokens, 20 ms apart)
      <- region proxy (python -m gateway)  <- router (python -m router, forward mode)
      <- nginx (when installed)
      <- LiteLLM's proxy (when installed; OpenAI's /v1/completions)

All of them share the one backend, so every path is measured against the same
worker. The region runs with the per-user limits off (the benchmark is one user
with hundreds of streams) and without implicit groups: h2load sends identical
requests with no `X-Ghostgate-Group`, which would otherwise all be one group and
supersede each other.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from gateway.auth import SigningKeys, mint
from loadtests.bench.clients import Target
from loadtests.bench.litellm import litellm_binary, litellm_command, litellm_config, litellm_env
from loadtests.bench.nginx import nginx_binary, nginx_command, nginx_config
from router.cli import create_key
from router.cluster import RegionPlan, router_command, wait_ready
from workers.launch import start_sim
from workers.process import Child

HOST = "127.0.0.1"
BENCH_REGION_FLAGS = ("--rate-limit", "0", "--max-streams", "0", "--no-implicit-groups")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Stack:
    """What is running: each path's target, and the pid of each process tree."""

    backend_url: str
    targets: dict[str, Target] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why


def start_stack(
    stack: ExitStack,
    state: Path,
    slots: int,
    region_args: list[str],
    with_nginx: bool = True,
    with_litellm: bool = True,
) -> Stack:
    """Start everything; `stack` stops it all, last started first."""
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sim_flags = ["--fast", "--fast-tokens", "20", "--fast-interval-ms", "20"]
    sim_flags += ["--parallel", str(slots), "--max-queue", "100000"]
    sim = stack.enter_context(start_sim(sim_flags, log_path=logs / "sim.log"))
    result = Stack(sim.url)
    host, port = sim.url.removeprefix("http://").rsplit(":", 1)
    result.targets["direct"] = Target("direct", host, int(port), http2=False)
    result.pids["backend"] = sim.pid
    keys = SigningKeys.load_or_create(state)
    region = RegionPlan("us-west", HOST, free_port(), (sim.url,), slots)
    router_url = _start_router(stack, state, region, result)
    argv = region.command(sys.executable, state, True, jwks=router_url + "/.well-known/jwks.json")
    argv += [*BENCH_REGION_FLAGS, "--queue-size", str(slots * 4), *region_args]
    child = stack.enter_context(Child.start("region", argv, log_path=logs / "region.log"))
    _wait(child, region.url)
    result.pids["region"] = child.pid
    wait_ready(router_url, time.monotonic() + 30)  # its probes have seen the region
    token, _ = mint(keys.active, "bench", lifetime=1800)
    result.targets["region"] = Target("region", HOST, region.port, True, f"Bearer {token}")
    key = asyncio.run(create_key(state, None, "bench"))[1]
    result.targets["router"] = Target(
        "router", HOST, int(router_url.rsplit(":", 1)[1]), True, f"Bearer {key}"
    )
    if with_nginx:
        _start_nginx(stack, state, sim.url, result)
    if with_litellm:
        _start_litellm(stack, state, sim.url, result)
    return result


def _start_router(stack: ExitStack, state: Path, region: RegionPlan, result: Stack) -> str:
    port = free_port()
    argv = router_command(sys.executable, HOST, port, state, [region])
    child = stack.enter_context(Child.start("router", argv, log_path=state / "logs/router.log"))
    url = f"http://{HOST}:{port}"
    _wait(child, url, "/healthz")
    result.pids["router"] = child.pid
    return url


def _start_nginx(stack: ExitStack, state: Path, backend: str, result: Stack) -> None:
    binary = nginx_binary()
    if binary is None:
        result.skipped["nginx"] = "not installed (apt-get install nginx-light)"
        return
    directory = state / "nginx"
    directory.mkdir()
    port = free_port()
    (directory / "nginx.conf").write_text(nginx_config(directory, port, backend))
    child = stack.enter_context(
        Child.start("nginx", nginx_command(binary, directory), log_path=directory / "out.log")
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            break
        except OSError:
            if not child.alive() or time.monotonic() > deadline:
                result.skipped["nginx"] = "did not start" + child.log_tail()
                return
            time.sleep(0.05)
    result.targets["nginx"] = Target("nginx", HOST, port, True)
    result.pids["nginx"] = child.pid


def _start_litellm(stack: ExitStack, state: Path, backend: str, result: Stack) -> None:
    binary = litellm_binary()
    if binary is None:
        result.skipped["litellm"] = "not installed (make bench installs it into .venv-litellm)"
        return
    config = state / "litellm.yaml"
    config.write_text(litellm_config(backend))
    port = free_port()
    argv = litellm_command(binary, config, HOST, port)
    master_key = "sk-bench-" + secrets.token_hex(16)
    child = stack.enter_context(
        Child.start(
            "litellm", argv, log_path=state / "logs/litellm.log", env=litellm_env(master_key)
        )
    )
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 120  # it imports for a while
    while True:
        try:
            wait_ready(url, time.monotonic() + 1, path="/health/liveliness")
            break
        except TimeoutError:
            if not child.alive() or time.monotonic() > deadline:
                result.skipped["litellm"] = "did not start" + child.log_tail()
                return
    result.targets["litellm"] = Target(
        "litellm", HOST, port, http2=False, authorization=f"Bearer {master_key}", openai=True
    )
    result.pids["litellm"] = child.pid


def _wait(child: Child, url: str, path: str = "/readyz") -> None:
    try:
        wait_ready(url, time.monotonic() + 30, path=path)
    except TimeoutError as exc:
        raise child.failure(str(exc)) from None
