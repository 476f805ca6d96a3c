"""`python -m workers.sim`: serve one simulated Ollama worker until SIGTERM or SIGINT.

    python -m workers.sim --host 127.0.0.1 --port 11434 \\
        [--models NAME[:fim] ...] [--parallel N] [--max-queue N] [--keep-alive DUR] \\
        [--load-seconds S] [--prefill-tps N] [--decode-tps N] \\
        [--fast [--fast-tokens N] [--fast-interval-ms MS]]

When it listens it prints exactly one line to stdout, with the real port (so
`--port 0` works): `ghostgate-sim listening on http://HOST:PORT`. Everything
else goes to stderr. This module is the only one that reads the environment:
OLLAMA_NUM_PARALLEL, OLLAMA_MAX_QUEUE and OLLAMA_KEEP_ALIVE are the defaults of
the matching flags, as in Ollama.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from workers.sim import READY_PREFIX
from workers.sim.app import start_server
from workers.sim.catalog import DEFAULT_MODELS, model_from_arg
from workers.sim.config import FastMode, Limits, SimConfig, Timing
from workers.sim.errors import SimError
from workers.sim.jobs import parse_keep_alive


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"ghostgate-sim: {name}={value!r} is not an integer") from None


def _keep_alive(text: str) -> float:
    """Seconds from a Go duration ("5m") or a number of seconds ("300"), like Ollama."""
    try:
        seconds = parse_keep_alive(text)
    except SimError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    assert seconds is not None
    return seconds


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.sim",
        description="A SIMULATED Ollama server (no GPU, no model) with a realistic timing model.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=11434, help="0 picks a free port (see the ready line)")
    add(
        "--models",
        nargs="+",
        action="extend",
        metavar="NAME[:fim]",
        help="models to serve instead of the defaults; ':fim' gives a template with .Suffix",
    )
    add(
        "--parallel",
        type=int,
        default=_env_int(env, "OLLAMA_NUM_PARALLEL", 4),
        help="generations at once per model (env OLLAMA_NUM_PARALLEL, default 4)",
    )
    add(
        "--max-queue",
        type=int,
        default=_env_int(env, "OLLAMA_MAX_QUEUE", 512),
        help="requests waiting for a slot before 503 (env OLLAMA_MAX_QUEUE, default 512)",
    )
    add(
        "--keep-alive",
        type=_keep_alive,
        default=env.get("OLLAMA_KEEP_ALIVE") or "5m",
        help="how long a model stays loaded after use (env OLLAMA_KEEP_ALIVE, default 5m)",
    )
    add("--load-seconds", type=float, default=0.3, help="model load time on first use")
    add("--prefill-tps", type=float, default=2000.0, help="prompt tokens per second")
    add("--decode-tps", type=float, default=50.0, help="generated tokens per second per slot")
    add("--num-ctx", type=int, default=4096, help="context length; longer prompts are cut")
    add("--num-predict-cap", type=int, default=4096)
    add("--min-tokens", type=int, default=16, help="shortest answer without num_predict")
    add("--max-tokens", type=int, default=64, help="longest answer without num_predict")
    add(
        "--fast",
        action="store_true",
        help="benchmark mode: no load, no prefill, fixed tokens at a fixed interval",
    )
    add("--fast-tokens", type=int, default=20)
    add("--fast-interval-ms", type=float, default=20.0)
    add(
        "--shutdown-timeout",
        type=float,
        default=0.5,
        help="seconds in-flight requests get on SIGTERM before they are cut",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The one place flags become a `SimConfig`."""
    models = tuple(model_from_arg(m) for m in args.models) if args.models else DEFAULT_MODELS
    return SimConfig(
        models=models,
        timing=Timing(args.load_seconds, args.prefill_tps, args.decode_tps),
        # Every field of Limits has a flag of the same name.
        limits=Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)}),
        fast=FastMode(args.fast, args.fast_tokens, args.fast_interval_ms / 1000),
        keep_alive=args.keep_alive,
        shutdown_timeout=args.shutdown_timeout,
    )


async def serve(config: SimConfig, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner, url = await start_server(config, host, port)
    try:
        print(READY_PREFIX + url, flush=True)
        models = ", ".join(m.name for m in config.models)
        mode = "fast mode" if config.fast.enabled else "timing model"
        print(
            f"ghostgate-sim: SIMULATED Ollama (no GPU, no model), {mode}, models: {models}",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    finally:
        await runner.cleanup()


def _run(config: SimConfig, host: str, port: int) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency
        asyncio.run(serve(config, host, port))
    else:
        uvloop.run(serve(config, host, port))


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser(os.environ if env is None else env).parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"ghostgate-sim: {exc}", file=sys.stderr)
        return 2
    try:
        _run(config, args.host, args.port)
    except OSError as exc:  # e.g. the port is taken
        print(f"ghostgate-sim: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
