"""`ghostgate` and `python run.py`: the command line of the whole project.

    ghostgate up [--multi-region] [--backend auto|ollama|sim] [--ollama URL]...
                 [--router-port PORT | --no-router] [--redis URL] [--wan-latency]
                 [--restarts N]
    ghostgate token USER [--lifetime SECONDS]
    ghostgate keys create USER | list | revoke KEY_ID
    ghostgate route --location LOC
    ghostgate bench [--quick]      (python -m loadtests.bench: the gateway's cost measured)

`python run.py ARGS` is `ghostgate up ARGS` when ARGS do not name a command.
`up` starts backends (simulated unless an Ollama answers), the router (unless
`--no-router`), one region process per region, waits until
each answers `/readyz`, writes `<state-dir>/run.json` (with a ready API key when
there is a router), prints a banner, and on Ctrl-C or SIGTERM stops everything
it started, regions first so they drain, then the router, and exits 0.
A child that exits meanwhile is started again on its port, after 0.5 s, 1 s,
2 s ...; one that keeps exiting (more than `--restarts` times a minute) stops
the whole cluster, with a message naming it, and `up` exits 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.cluster import RegionPlan
    from workers.supervisor import Supervisor

COMMANDS = ("up", "token", "keys", "route")
DEFAULT_OLLAMA = "http://127.0.0.1:11434"
DEFAULT_ROUTER_PORT = 8080


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ghostgate", description="Self-hosted HTTP/2 gateway for AI code completion."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_up_arguments(commands.add_parser("up", help="run the local cluster"))
    token = commands.add_parser("token", help="mint a JWT from the local signing key")
    token.add_argument("user")
    token.add_argument("--lifetime", type=float, default=600.0, help="seconds (default 600)")
    token.add_argument(
        "--scope",
        default="completions chat",
        help="space-separated, of completions, chat, admin (default: completions chat)",
    )
    token.add_argument("--state-dir", type=Path, default=Path(".ghostgate"))
    from router.cli import add_commands

    add_commands(commands)
    return parser


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--multi-region",
        action="store_true",
        help="four regions: us-west :8000, us-east :8001, eu-west :8002, ap-east :8003",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "ollama", "sim"),
        default="auto",
        help="auto: the Ollama at $OLLAMA_HOST if it answers, else simulated",
    )
    parser.add_argument(
        "--ollama",
        action="append",
        metavar="URL",
        default=[],
        help="an Ollama server to use (repeatable); implies --backend ollama",
    )
    parser.add_argument("--state-dir", type=Path, default=Path(".ghostgate"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="first region's port")
    parser.add_argument("--region", default="us-west", help="region name (single-region mode)")
    parser.add_argument("--slots", type=int, default=4, help="parallel generations per backend")
    parser.add_argument(
        "--sim-workers", type=int, default=1, help="simulated Ollama workers per region (default 1)"
    )
    parser.add_argument(
        "--router-port",
        type=int,
        default=DEFAULT_ROUTER_PORT,
        help=f"the router's port (default {DEFAULT_ROUTER_PORT})",
    )
    parser.add_argument(
        "--no-router", action="store_true", help="regions only (tokens from `ghostgate token`)"
    )
    parser.add_argument("--redis", metavar="URL", help="shared state in Redis (router and regions)")
    parser.add_argument(
        "--wan-latency",
        action="store_true",
        help="the router delays each forward by the estimated client-region RTT",
    )
    parser.add_argument(
        "--sim-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra flag for every simulated worker, e.g. --sim-arg=--fast",
    )
    parser.add_argument(
        "--restarts",
        type=int,
        default=5,
        metavar="N",
        help="restarts of a child within a minute before the cluster stops (0: never restart)",
    )


def cmd_token(args: argparse.Namespace) -> int:
    from gateway.auth import SigningKeys, mint

    keys = SigningKeys.load_or_create(args.state_dir)
    try:
        token, _ = mint(keys.active, args.user, scope=args.scope, lifetime=args.lifetime)
    except ValueError as exc:  # an unknown scope: no verifier would accept the token
        print(f"ghostgate: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from gateway.auth import SigningKeys, mint
    from router.cluster import banner, previous_api_key, run_info, write_run_json
    from workers.supervisor import RestartPolicy, Supervisor

    state_dir: Path = args.state_dir
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = SigningKeys.load_or_create(state_dir)
    stop = install_signal_handlers()
    kind, ollama = choose_backends(args)
    user = os.environ.get("USER") or "developer"
    # Leaving it stops every child, last started first: regions, router, workers.
    with Supervisor(RestartPolicy(max_restarts=args.restarts)) as supervisor:
        plans = plan_regions(args, ollama, supervisor, logs)
        router = start_router(args, plans, supervisor, logs)
        start_regions(args, plans, kind, supervisor, logs, router)
        api_key = None
        if router is not None:
            api_key = ensure_api_key(args, user, previous_api_key(state_dir))
        info = run_info(plans, kind, router=router, api_key=api_key)
        write_run_json(state_dir, info)
        token, _ = mint(keys.active, user)
        print(banner(info, token, state_dir, logs), flush=True)
        code = supervise(supervisor, stop)
    print("ghostgate: stopped", flush=True)
    return code


def router_port(args: argparse.Namespace) -> int | None:
    """The router's port, or None with `--no-router`."""
    return None if args.no_router else int(args.router_port)


def start_router(
    args: argparse.Namespace, plans: list[RegionPlan], supervisor: Supervisor, logs: Path
) -> str | None:
    """Start the router in front of `plans` (before the regions: they fetch its JWKS)."""
    from router.cluster import router_command, wait_ready
    from workers.process import Child

    port = router_port(args)
    if port is None:
        return None
    argv = router_command(
        sys.executable, args.host, port, args.state_dir, plans, args.redis, args.wan_latency
    )
    child = supervisor.add(Child.start("router", argv, log_path=logs / "router.log"), restart=argv)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{port}"
    try:
        wait_ready(url, time.monotonic() + 20, path="/healthz")
    except TimeoutError as exc:
        raise child.failure(str(exc)) from None
    return url


def ensure_api_key(args: argparse.Namespace, user: str, previous: str | None) -> str:
    """The API key of the last `up` if still active, else a new one for `user`."""
    import asyncio

    from router.cli import ensure_key

    return asyncio.run(ensure_key(args.state_dir, args.redis, user, previous))


def choose_backends(args: argparse.Namespace) -> tuple[str, list[str]]:
    """("ollama", URLs) when an Ollama is named or answers, else ("sim", [])."""
    from workers.ollama import probe_backend

    if args.ollama:
        return "ollama", [u.rstrip("/") for u in args.ollama]
    if args.backend == "sim":
        return "sim", []
    host = os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA
    url = host if host.startswith("http") else f"http://{host}"
    probe = probe_backend(url, 1.0)
    if probe is not None:
        # A simulated worker someone left on :11434 is still simulated: say so.
        return ("sim" if probe.simulated else "ollama"), [url.rstrip("/")]
    if args.backend == "ollama":
        raise SystemExit(f"ghostgate: no Ollama answers at {url} (set OLLAMA_HOST or --ollama)")
    print(
        f"ghostgate: no Ollama at {url}: using SIMULATED Ollama workers (no GPU, no model)",
        file=sys.stderr,
        flush=True,
    )
    return "sim", []


def plan_regions(
    args: argparse.Namespace, ollama: list[str], supervisor: Supervisor, logs: Path
) -> list[RegionPlan]:
    """Every region's plan, its simulated workers started."""
    from router.cluster import LOCAL_REGIONS, RegionPlan

    names = LOCAL_REGIONS if args.multi_region else ((args.region, args.port),)
    plans: list[RegionPlan] = []
    for index, (name, default_port) in enumerate(names):
        port = args.port + index if args.multi_region else default_port
        backends = ollama
        if not ollama:  # no server named or found: start simulated workers
            backends = [
                start_sim_worker(args, f"sim-{name}-{i}", supervisor, logs)
                for i in range(args.sim_workers)
            ]
        plans.append(RegionPlan(name, args.host, port, tuple(backends), args.slots))
    return plans


def start_sim_worker(
    args: argparse.Namespace, name: str, supervisor: Supervisor, logs: Path
) -> str:
    """Start one simulated worker on a free port; its URL. A restart reuses that port,
    so the region, which knows its backends by URL, reaches the new process."""
    from urllib.parse import urlsplit

    from workers.launch import sim_command, start_sim

    flags = [*args.sim_arg, "--parallel", str(args.slots)]
    sim = start_sim(flags, log_path=logs / f"{name}.log", name=name)
    port = str(urlsplit(sim.url).port)
    supervisor.add(sim.child, restart=sim_command([*flags, "--port", port]))
    return sim.url


def start_regions(
    args: argparse.Namespace,
    plans: list[RegionPlan],
    kind: str,
    supervisor: Supervisor,
    logs: Path,
    router: str | None,
) -> None:
    """Start every region process; wait until all are ready, and the router with them."""
    from router.cluster import wait_ready, wait_router_sees
    from workers.process import Child

    jwks = f"{router}/.well-known/jwks.json" if router else None
    for plan in plans:
        argv = plan.command(sys.executable, args.state_dir, kind == "sim", jwks=jwks)
        if args.redis:  # the router's keys and revocations live there too
            argv += ["--redis", args.redis]
        child = Child.start(plan.name, argv, log_path=logs / f"{plan.name}.log")
        supervisor.add(child, restart=argv)
    deadline = time.monotonic() + 30
    for plan in plans:
        wait_ready(plan.url, deadline)
    if router is not None:
        wait_router_sees(router, [plan.name for plan in plans], deadline)


def install_signal_handlers() -> Callable[[], bool]:
    """SIGINT and SIGTERM ask for a clean stop; returns "has one been asked for"."""
    asked: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        asked.append(signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return lambda: bool(asked)


def supervise(supervisor: Supervisor, stop: Callable[[], bool]) -> int:
    """Keep every child up until a stop signal (0), or until one cannot be (1)."""
    from workers.process import ChildFailed

    try:
        supervisor.watch(stop)
    except ChildFailed as exc:
        print(f"ghostgate: {exc}\nghostgate: stopping the cluster", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own flags: see python -m loadtests.bench --help
        from loadtests.bench.__main__ import main as bench

        return bench(argv[1:])
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "up")
    args = build_parser().parse_args(argv)
    if args.command == "token":
        return cmd_token(args)
    if args.command in ("keys", "route"):
        from router.cli import cmd_keys, cmd_route

        return cmd_keys(args) if args.command == "keys" else cmd_route(args)
    return cmd_up(args)


if __name__ == "__main__":
    sys.exit(main())
