"""The local cluster's plan and its face: which regions listen where, `run.json`,
and the banner that tells a developer how to use it.

Process supervision lives in `run.py` (it starts workers too); this module is
plain data and text, so it is tested without starting anything.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from gateway.keystore import write_private

LOCAL_REGIONS: tuple[tuple[str, int], ...] = (
    ("us-west", 8000),
    ("us-east", 8001),
    ("eu-west", 8002),
    ("ap-east", 8003),
)


@dataclass(frozen=True, slots=True)
class RegionPlan:
    """One region process to run: its name, where it listens, its backends."""

    name: str
    host: str
    port: int
    backends: tuple[str, ...]
    slots: int = 4
    tls: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def command(self, python: str, state_dir: Path, simulated: bool) -> list[str]:
        """The argv of this region's `python -m gateway` process."""
        argv = [
            python,
            "-m",
            "gateway",
            "--region",
            self.name,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--state-dir",
            str(state_dir),
            "--slots",
            str(self.slots),
        ]
        for backend in self.backends:
            argv += ["--backend", backend]
        if simulated:
            argv.append("--simulated")
        return argv


class RunInfo(TypedDict):
    """`<state-dir>/run.json`: what a script or load test needs to find the cluster."""

    router: str | None
    regions: dict[str, str]
    api_key: str | None
    backend: str
    backends: dict[str, list[str]]


def run_info(
    regions: list[RegionPlan],
    backend_kind: str,
    router: str | None = None,
    api_key: str | None = None,
) -> RunInfo:
    return {
        "router": router,
        "regions": {r.name: r.url for r in regions},
        "api_key": api_key,
        "backend": backend_kind,
        "backends": {r.name: list(r.backends) for r in regions},
    }


def write_run_json(state_dir: Path, info: RunInfo) -> Path:
    """Written atomically, mode 0600: it holds a ready API key."""
    path = state_dir / "run.json"
    write_private(path, (json.dumps(info, indent=2) + "\n").encode())
    return path


def wait_ready(
    url: str, deadline: float, path: str = "/readyz", context: ssl.SSLContext | None = None
) -> None:
    """Poll `url + path` until it answers 200, or raise TimeoutError at `deadline`."""
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + path, timeout=1.0, context=context) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready: {last}")


def banner(info: RunInfo, token: str, state_dir: Path, logs: Path) -> str:
    """What `ghostgate up` prints once everything answers."""
    first_region, first_url = next(iter(info["regions"].items()))
    entry = info["router"] or first_url
    simulated = info["backend"] == "sim"
    lines = [
        "",
        "Ghostgate is up"
        + ("  (SIMULATED Ollama backends: no GPU, no model weights)" if simulated else ""),
        "",
    ]
    if info["router"]:
        lines.append(f"  router     {info['router']}")
    for name, url in info["regions"].items():
        backends = ", ".join(info["backends"][name])
        lines.append(f"  {name:<10} {url}   -> {backends}")
    lines += [
        "",
        f"  token      {token}",
        f"             (10 minutes; a new one: ghostgate token $USER --state-dir {state_dir})",
    ]
    if info["api_key"]:
        lines.append(f"  API key    {info['api_key']}")
    lines += [
        "",
        "Try it:",
        f"  curl --http2-prior-knowledge {entry}/api/generate \\",
        '       -H "Authorization: Bearer $TOKEN" \\',
        '       -d \'{"model": "starcoder2:3b", "prompt": "def fib(n):"}\'',
        "",
        "  python -c 'import ollama; c = ollama.Client(host=\"" + entry + '", '
        'headers={"Authorization": "Bearer TOKEN"}); print(c.list())\'',
        "",
        "Continue (~/.continue/config.yaml), autocomplete model:",
        "  provider: ollama",
        "  model: starcoder2:3b",
        f"  apiBase: {entry}",
        "  requestOptions: {headers: {Authorization: Bearer TOKEN}}",
        "",
        f"Region: {first_region}.  State: {state_dir}/run.json.  Logs: {logs}/",
        "Ctrl-C drains and stops everything.",
        "",
    ]
    return "\n".join(lines)
