"""The locust scenario, headless for a few seconds, against `run.py --multi-region`."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent.parent
REGIONS = {"us-west", "us-east", "eu-west", "ap-east"}


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports (run.py puts regions on port, port+1, ...)."""
    for _ in range(50):
        base = random.randrange(20_000, 60_000)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no run of free ports")


def wait_all_regions_up(router: str, deadline: float) -> None:
    """run.py is done when the router has seen one region up; the test needs all four."""
    while True:
        try:
            with urllib.request.urlopen(router + "/readyz", timeout=5) as response:
                if set(json.loads(response.read()).get("regions_up", [])) == REGIONS:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the router never saw every region up"
        time.sleep(0.1)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`run.py up --multi-region` on free ports, with the load test's region settings."""
    state = tmp_path / "state"
    router = free_port()
    env = {**os.environ, "GHOSTGATE_CONFIG": str(ROOT / "loadtests" / "cluster.toml")}
    argv = [sys.executable, "run.py", "up", "--multi-region", "--backend", "sim"]
    argv += ["--state-dir", str(state), "--port", str(free_port_run(4))]
    argv += ["--router-port", str(router)]
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not (state / "run.json").exists():
            assert process.poll() is None, "run.py exited"
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.2)
        info = json.loads((state / "run.json").read_text())
        wait_all_regions_up(info["router"], deadline)
        yield info["router"], state
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_typing_developers_headless(cluster: tuple[str, Path], tmp_path: Path) -> None:
    router, state = cluster
    prefix = tmp_path / "locust"
    argv = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py")]
    argv += ["--host", router, "--headless", "-u", "8", "-r", "8", "-t", "10s"]
    argv += ["--only-summary", "--csv", str(prefix), "--loglevel", "WARNING"]
    env = {**os.environ, "GHOSTGATE_STATE_DIR": str(state)}
    env.pop("GHOSTGATE_API_KEY", None)
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(f"{prefix}_stats.csv", newline="") as handle:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}
    assert int(rows[("", "Aggregated")]["Failure Count"]) == 0
    ttft = {name for kind, name in rows if kind == "TTFT"}
    assert ttft == REGIONS, rows.keys()  # users sit near each of the four regions
    for name in REGIONS:
        assert int(rows[("TTFT", name)]["Request Count"]) > 0
    kinds = {kind for kind, _ in rows}
    assert {"completed", "cancelled"} <= kinds, kinds
    assert int(rows[("POST", "/v1/token")]["Request Count"]) == 8
