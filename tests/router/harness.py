"""A router in front of real region processes, on real sockets, for end-to-end tests.

Each region runs `python -m gateway --jwks <router>/.well-known/jwks.json` with
its own state dir, so it trusts the router's keys only through the JWKS. The
router runs `python -m router` with its own state dir. Ports are chosen first,
so the router starts before the regions and their first JWKS fetch succeeds.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.auth.keys import SigningKeys
from gateway.auth.tokens import mint
from router.cluster import RegionPlan, router_command, wait_ready
from tests.e2e import Sim, free_port, sim_worker
from workers.process import Child

MODEL = "starcoder2:3b"


@dataclass
class RegionProcess:
    """One region proxy process that a test can kill and start again on its port."""

    plan: RegionPlan
    argv: list[str]
    log: Path
    sim: Sim
    child: Child | None = None

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def url(self) -> str:
        return self.plan.url

    def start(self) -> None:
        self.child = Child.start(self.name, self.argv, log_path=self.log)
        try:
            wait_ready(self.url, time.monotonic() + 20)
        except TimeoutError as exc:
            raise self.child.failure(str(exc)) from None

    def kill(self) -> None:
        """SIGKILL: the region's box dies."""
        assert self.child is not None
        self.child.kill()
        self.child.stop()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


@dataclass
class Cluster:
    url: str
    port: int
    state_dir: Path
    router: Child
    regions: dict[str, RegionProcess] = field(default_factory=dict)
    admin_token: str = ""

    def ready(self) -> dict[str, Any]:
        return request_json("GET", self.url + "/readyz")[1]

    def admin_auth(self) -> dict[str, str]:
        """An operator's token (scope `admin`), signed with the router's key: the
        full /readyz of the router and, through their JWKS, of every region."""
        if not self.admin_token:
            keys = SigningKeys.load_or_create(self.state_dir)
            self.admin_token = mint(keys.active, "operator", scope="admin")[0]
        return {"Authorization": f"Bearer {self.admin_token}"}

    def wait_until(self, predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.ready()}")

    def regions_up(self) -> set[str]:
        return set(self.ready().get("regions_up", []))


def request_json(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    source: str | None = None,
) -> tuple[int, Any, http.client.HTTPMessage]:
    """(status, parsed JSON body, headers) over HTTP/1.1; `source` binds the client address."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1",
        parts.port,
        timeout=10,
        source_address=(source, 0) if source else None,
    )
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None, response.headers
    finally:
        connection.close()


def generate_body(num_predict: int, prompt: str = "def fib(n):") -> bytes:
    return json.dumps(
        {"model": MODEL, "prompt": prompt, "options": {"num_predict": num_predict}}
    ).encode()


@contextmanager
def cluster(
    tmp: Path,
    names: Sequence[str] = ("us-west", "eu-west", "ap-east"),
    router_args: Sequence[str] = (),
    sim_args: Sequence[str] = ("--load-seconds", "0.05"),
    region_args: Sequence[str] = (),
) -> Iterator[Cluster]:
    """The router and one region (with one simulated worker) per name; all stopped on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    jwks = url + "/.well-known/jwks.json"
    state = tmp / "router"
    with ExitStack() as stack:
        regions: dict[str, RegionProcess] = {}
        for name in names:
            home = tmp / name
            home.mkdir(parents=True)
            sim = stack.enter_context(sim_worker(home, "sim", sim_args))
            plan = RegionPlan(name, "127.0.0.1", free_port(), (sim.url,), slots=4)
            argv = [*plan.command(sys.executable, home, simulated=True, jwks=jwks), *region_args]
            regions[name] = RegionProcess(plan, argv, home / "region.log", sim)
        argv = [
            *router_command(
                sys.executable, "127.0.0.1", port, state, list(r.plan for r in regions.values())
            ),
            *router_args,
        ]
        router = stack.enter_context(Child.start("router", argv, log_path=tmp / "router.log"))
        try:
            wait_ready(url, time.monotonic() + 20, path="/healthz")
        except TimeoutError as exc:
            raise router.failure(str(exc)) from None
        for region in regions.values():
            stack.callback(region.stop)
            region.start()
        result = Cluster(url, port, state, router, regions)
        result.wait_until(lambda c: c.regions_up() == set(names), what="every region up")
        yield result
