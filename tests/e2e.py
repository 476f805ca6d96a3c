"""Real processes on real sockets for end-to-end tests: simulated Ollama workers
and region proxies, started the way `ghostgate up` starts them."""

from __future__ import annotations

import json
import socket
import ssl
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.auth.keys import SigningKeys
from gateway.auth.tokens import mint
from router.cluster import RegionPlan, wait_ready
from workers.launch import start_sim
from workers.process import Child


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def readyz(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The /readyz report at `url`, whether it answers 200 or 503."""
    try:
        ready: dict[str, Any] = get_json(url + "/readyz", headers)
    except urllib.error.HTTPError as exc:
        with exc:
            ready = json.loads(exc.read())
    return ready


ADMIN_KEY = "scope=admin"  # where `Region.tokens` keeps the operator's token


@dataclass
class Sim:
    url: str
    handle: Any

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = get_json(self.url + "/sim/stats")
        return stats


@dataclass
class Region:
    plan: RegionPlan
    child: Child
    keys: SigningKeys
    sims: list[Sim]
    state_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.plan.url

    @property
    def port(self) -> int:
        return self.plan.port

    def token(self, user: str = "alice") -> str:
        if user not in self.tokens:
            self.tokens[user] = mint(self.keys.active, user)[0]
        return self.tokens[user]

    def auth(self, user: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    def admin_auth(self) -> dict[str, str]:
        """An operator's token (scope `admin`): /readyz's full report."""
        if ADMIN_KEY not in self.tokens:
            self.tokens[ADMIN_KEY] = mint(self.keys.active, "operator", scope="admin")[0]
        return {"Authorization": f"Bearer {self.tokens[ADMIN_KEY]}"}

    def readyz(self, admin: bool = False) -> dict[str, Any]:
        """/readyz, 200 or 503; `admin`: the full report (backends, store, groups, tasks)."""
        return readyz(self.url, self.admin_auth() if admin else None)

    def wait_until(self, predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
        """Until `predicate` holds of the full /readyz report."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.readyz(admin=True)):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.readyz(admin=True)}")


@contextmanager
def sim_worker(tmp: Path, name: str, args: Sequence[str] = ()) -> Iterator[Sim]:
    with start_sim(extra_args=list(args), log_path=tmp / f"{name}.log") as handle:
        yield Sim(handle.url, handle)


@contextmanager
def region(
    tmp: Path,
    *,
    sims: int = 1,
    sim_args: Sequence[str] = (),
    slots: int = 4,
    region_args: Sequence[str] = (),
    name: str = "test-region",
    tls: tuple[Path, Path] | None = None,
) -> Iterator[Region]:
    """A region proxy in front of `sims` simulated workers; all stopped on exit.

    With `tls` (certificate, key) it serves HTTPS, HTTP/2 by ALPN."""
    keys = SigningKeys.load_or_create(tmp)
    with ExitStack() as stack:
        workers = [
            stack.enter_context(sim_worker(tmp, f"sim{i}", ["--parallel", str(slots), *sim_args]))
            for i in range(sims)
        ]
        backends = tuple(w.url for w in workers)
        plan = RegionPlan(name, "127.0.0.1", free_port(), backends, slots, tls=tls is not None)
        argv = [*plan.command(sys.executable, tmp, True), *region_args]
        context = None
        if tls is not None:
            argv += ["--certfile", str(tls[0]), "--keyfile", str(tls[1])]
            context = ssl.create_default_context(cafile=str(tls[0]))
        child = stack.enter_context(Child.start(name, argv, log_path=tmp / f"{name}.log"))
        try:
            wait_ready(plan.url, time.monotonic() + 20, context=context)
        except TimeoutError as exc:
            raise child.failure(str(exc)) from None
        yield Region(plan, child, keys, workers, tmp)


def http11_post(path: str, token: str, body: bytes, extra: dict[str, str] | None = None) -> bytes:
    """A raw HTTP/1.1 POST, for tests that must control the socket themselves."""
    headers = {
        "Host": "ghostgate",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
        "Content-Length": str(len(body)),
        **(extra or {}),
    }
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body
