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

from gateway.auth import write_private

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

    def command(
        self, python: str, state_dir: Path, simulated: bool, jwks: str | None = None
    ) -> list[str]:
        """The argv of this region's `python -m gateway` process.

        With `jwks` (the router's) it also trusts the keys published there;
        the state dir's key files are read at start either way.
        """
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
        if jwks:
            argv += ["--jwks", jwks]
        return argv


def router_command(
    python: str,
    host: str,
    port: int,
    state_dir: Path,
    regions: list[RegionPlan],
    redis: str | None = None,
    wan_latency: bool = False,
) -> list[str]:
    """The argv of the router's `python -m router` process, in front of `regions`."""
    argv = [python, "-m", "router", "--host", host, "--port", str(port)]
    argv += ["--state-dir", str(state_dir)]
    for plan in regions:
        argv += ["--region", f"{plan.name}={plan.url}"]
    if redis:
        argv += ["--redis", redis]
    if wan_latency:
        argv.append("--wan-latency")
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


def previous_api_key(state_dir: Path) -> str | None:
    """The API key the last `ghostgate up` recorded in run.json, if any."""
    try:
        key = json.loads((state_dir / "run.json").read_text()).get("api_key")
    except (OSError, ValueError, AttributeError):
        return None
    return key if isinstance(key, str) and key else None


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


def wait_router_sees(router: str, names: list[str], deadline: float) -> None:
    """Poll the router's /readyz until its probes have seen every region up.

    Its /readyz turns 200 with the first region up; a developer who starts
    right after `up` should already be routed to the nearest, not the first.
    """
    last: object = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(router + "/readyz", timeout=1.0) as response:
                last = json.loads(response.read()).get("regions_up", [])
        except (OSError, ValueError) as exc:
            last = str(exc)
        if isinstance(last, list) and set(names) <= set(last):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{router} does not see every region up: {last}")


def banner(info: RunInfo, token: str, state_dir: Path, logs: Path) -> str:
    """What `ghostgate up` prints once everything answers."""
    simulated = info["backend"] == "sim"
    lines = [
        "",
        "Ghostgate is up"
        + ("  (SIMULATED Ollama backends: no GPU, no model weights)" if simulated else ""),
        "",
    ]
    if info["router"]:
        lines.append(f"  router     {info['router']}   (status page: open it in a browser)")
    for name, url in info["regions"].items():
        backends = ", ".join(info["backends"][name])
        lines.append(f"  {name:<10} {url}   -> {backends}")
    lines += ["", f"  token      {token}"]
    lines.append(
        f"             (10 minutes; a new one: ghostgate token $USER --state-dir {state_dir})"
    )
    if info["router"] and info["api_key"]:
        lines.append(f"  API key    {info['api_key']}")
        lines += _router_setup(info["router"], info["api_key"])
    else:
        lines += _direct_setup(next(iter(info["regions"].values())))
    lines += [
        "",
        f"State: {state_dir}/run.json.  Logs: {logs}/",
        "Ctrl-C drains and stops everything.",
        "",
    ]
    return "\n".join(lines)


_BODY = '\'{"model": "starcoder2:3b", "prompt": "def fib(n):"}\''


def _router_setup(router: str, key: str) -> list[str]:
    """How to use the cluster through the router, with the ready API key."""
    return [
        "             (ghostgate keys create|list|revoke; this one is also in run.json)",
        "",
        "Try it through the router (forward mode: the API key is all you need):",
        f"  curl {router}/api/generate -H 'Authorization: Bearer {key}' \\",
        f"       -d {_BODY}",
        "",
        "Or take a token for the nearest region and go there directly over HTTP/2:",
        f"  curl -X POST {router}/v1/token -H 'Authorization: Bearer {key}'",
        "  # -> token, expires_at, refresh_in, region, endpoints.proxy (the region's URL)",
        '  curl --http2-prior-knowledge $PROXY/api/generate -H "Authorization: Bearer $TOKEN" \\',
        f"       -d {_BODY}",
        "",
        "Continue (~/.continue/config.yaml), autocomplete model:",
        "  provider: ollama",
        "  model: starcoder2:3b",
        f"  apiBase: {router}",
        f"  apiKey: {key}",
        "",
        "GitHub Copilot extension (settings.json; details and caveats: README, Router):",
        '  "github.copilot.advanced": {',
        f'    "debug.overrideProxyUrl": "{router}",',
        f'    "debug.overrideCapiUrl": "{router}/v1"',
        "  }",
        f"  its token comes from {router}/copilot_internal/v2/token (Authorization: token <key>)",
    ]


def _direct_setup(region: str) -> list[str]:
    """How to use a region directly with the minted token (no router running)."""
    return [
        "",
        "Try it:",
        f"  curl --http2-prior-knowledge {region}/api/generate \\",
        '       -H "Authorization: Bearer $TOKEN" \\',
        f"       -d {_BODY}",
        "",
        "  python -c 'import ollama; c = ollama.Client(host=\"" + region + '", '
        'headers={"Authorization": "Bearer TOKEN"}); print(c.list())\'',
        "",
        "Continue (~/.continue/config.yaml), autocomplete model:",
        "  provider: ollama",
        "  model: starcoder2:3b",
        f"  apiBase: {region}",
        "  apiKey: TOKEN",
    ]
