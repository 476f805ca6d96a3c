"""Real `ollama serve` processes: find the binary, start one per port, wait, stop; and probing.

One `ollama serve` listens on one address, set by OLLAMA_HOST, so a box with
several GPUs (or a test of several backends) runs one process per port. Its
concurrency comes from the environment, and Ghostgate sets it explicitly
because the defaults do not suit a completion gateway: OLLAMA_NUM_PARALLEL
defaults to 1 since Ollama v0.9.7 (Ghostgate schedules 4 slots per backend),
and OLLAMA_MAX_QUEUE to 512.

    OllamaError
    └── OllamaNotFound      no `ollama` binary on PATH (or at the given path)
    (workers.process.ChildFailed: it started but exited or never answered)
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from workers.process import Child, ChildFailed, StopsOnExit


class OllamaError(RuntimeError):
    """Base of this module's errors."""


class OllamaNotFound(OllamaError):
    """The `ollama` binary is not installed where we looked."""


@dataclass(frozen=True, slots=True)
class OllamaSettings:
    """The environment knobs Ghostgate sets on every `ollama serve`."""

    num_parallel: int = 4
    max_queue: int = 512
    # Editors go quiet for longer than Ollama's 5m default, and a reload costs
    # seconds of time-to-first-token; keep completion models resident longer.
    keep_alive: str = "30m"


@dataclass(frozen=True, slots=True)
class Probe:
    """What a server answering Ollama's API said about itself."""

    version: str
    simulated: bool  # it sent `X-Ollama-Simulated: 1`: a ghostgate-sim, not a GPU


def ollama_env(
    host: str, port: int, settings: OllamaSettings, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of one `ollama serve`: `base` (default: ours, for PATH, HOME,
    OLLAMA_MODELS, CUDA_*) with the listening address and concurrency set."""
    env = dict(os.environ if base is None else base)
    env.update(
        OLLAMA_HOST=f"{host}:{port}",
        OLLAMA_NUM_PARALLEL=str(settings.num_parallel),
        OLLAMA_MAX_QUEUE=str(settings.max_queue),
        OLLAMA_KEEP_ALIVE=settings.keep_alive,
    )
    return env


def find_ollama(path: str | Path | None = None) -> str:
    """The `ollama` executable: `path` if given, else the one on PATH."""
    found = shutil.which(str(path)) if path is not None else shutil.which("ollama")
    if found is None:
        where = f"at {path}" if path is not None else "on PATH"
        raise OllamaNotFound(
            f"no ollama binary {where}: install it (https://ollama.com/download), "
            "pass its path, or use simulated workers (--backend sim)"
        )
    return found


def probe_backend(url: str, timeout: float = 1.0) -> Probe | None:
    """`GET /api/version`: a `Probe` if an Ollama API answers 200 there, else None."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/version", timeout=timeout) as resp:
            if resp.status != 200:
                return None
            body = json.loads(resp.read())
            simulated = resp.headers.get("X-Ollama-Simulated") == "1"
    except (OSError, ValueError):  # refused, timed out, HTTP error, not JSON
        return None
    version = body.get("version") if isinstance(body, dict) else None
    return Probe(version, simulated) if isinstance(version, str) else None


def probe_ollama(url: str, timeout: float = 1.0) -> bool:
    """Does an Ollama API answer `GET /api/version` with 200 at `url`? (`--backend auto`)"""
    return probe_backend(url, timeout) is not None


def wait_ready(url: str, timeout: float, child: Child | None = None) -> Probe:
    """Poll `url` until it answers; `ChildFailed` if `child` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        probe = probe_backend(url, timeout=1.0)
        if probe is not None:
            return probe
        if child is not None and not child.alive():
            raise child.failure(f"exited before answering at {url}")
        if time.monotonic() >= deadline:
            if child is not None:
                raise child.failure(f"did not answer at {url} within {timeout:g} s")
            raise ChildFailed(f"nothing answered at {url} within {timeout:g} s")
        time.sleep(0.1)


class OllamaHandle(StopsOnExit):
    """A running `ollama serve`: its URL and process. A context manager that stops it."""

    def __init__(self, url: str, child: Child, version: str) -> None:
        self.url = url
        self.child = child
        self.version = version

    @property
    def pid(self) -> int:
        return self.child.pid

    def stop(self, grace: float = 15.0) -> int:
        """SIGTERM (Ollama unloads models and exits), then SIGKILL after `grace` seconds."""
        return self.child.stop(grace)

    def __repr__(self) -> str:
        return f"<OllamaHandle {self.url} pid={self.pid} version={self.version}>"


def start_ollama(
    port: int,
    *,
    host: str = "127.0.0.1",
    binary: str | Path | None = None,
    settings: OllamaSettings | None = None,
    log_path: Path | None = None,
    timeout: float = 30.0,
    base_env: Mapping[str, str] | None = None,
) -> OllamaHandle:
    """Start `ollama serve` on host:port and wait until `GET /api/version` answers.

    Raises `OllamaNotFound` without the binary, `ChildFailed` (with the log's
    tail) if it exits or does not answer within `timeout` seconds.
    """
    executable = find_ollama(binary)
    env = ollama_env(host, port, settings or OllamaSettings(), base_env)
    child = Child.start(f"ollama:{port}", [executable, "serve"], log_path=log_path, env=env)
    url = f"http://{host}:{port}"
    try:
        probe = wait_ready(url, timeout, child)
    except BaseException:
        child.stop()
        raise
    return OllamaHandle(url, child, probe.version)


def start_ollamas(
    ports: Sequence[int],
    *,
    host: str = "127.0.0.1",
    binary: str | Path | None = None,
    settings: OllamaSettings | None = None,
    log_dir: Path | None = None,
    timeout: float = 30.0,
) -> list[OllamaHandle]:
    """One `ollama serve` per port (logs `ollama-PORT.log` in `log_dir`); all or none run."""
    handles: list[OllamaHandle] = []
    try:
        for port in ports:
            log_path = log_dir / f"ollama-{port}.log" if log_dir is not None else None
            handles.append(
                start_ollama(
                    port,
                    host=host,
                    binary=binary,
                    settings=settings,
                    log_path=log_path,
                    timeout=timeout,
                )
            )
    except BaseException:
        for handle in reversed(handles):
            handle.stop()
        raise
    return handles
