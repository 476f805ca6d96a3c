"""`ghostgate up --multi-region`: the router comes up with the regions, run.json has
its URL and a ready API key, and everything stops cleanly."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.router.harness import generate_body, request_json
from tests.test_run import ROOT, listening, processes_mentioning, wait_for_file

pytestmark = pytest.mark.e2e


def free_run(count: int) -> int:
    """The first of `count` consecutive free ports (the regions take --port, --port+1, ...)."""
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


def test_up_multi_region_runs_the_router_with_a_ready_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    base = free_run(5)  # four regions, then the router
    argv = [sys.executable, "run.py", "up", "--multi-region", "--backend", "sim"]
    argv += ["--state-dir", str(state), "--port", str(base), "--router-port", str(base + 4)]
    argv += ["--sim-arg=--load-seconds=0"]
    process = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_file(state / "run.json", process, 40)
        info = json.loads((state / "run.json").read_text())
        assert (state / "run.json").stat().st_mode & 0o777 == 0o600
        router, key = info["router"], info["api_key"]
        assert router == f"http://127.0.0.1:{base + 4}" and key.startswith("gg_")
        assert list(info["regions"]) == ["us-west", "us-east", "eu-west", "ap-east"]
        headers = {"Authorization": f"Bearer {key}", "X-Client-Location": "JP"}
        status, answer, _ = request_json("POST", router + "/v1/token", headers)
        assert status == 200 and answer["region"] == "ap-east"
        status, _, response = request_json("POST", router + "/api/generate", headers, body())
        assert status == 200 and response["X-Ghostgate-Region"] == "ap-east"
        check_revocation_reaches_the_regions(state, router, info["regions"]["ap-east"])
        backends = [url for urls in info["backends"].values() for url in urls]
        children = [router, *info["regions"].values(), *backends]
        assert all(listening(url) for url in children)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert f"router     {router}" in output and key in output and "overrideProxyUrl" in output
    assert processes_mentioning(str(state)) == []
    assert not any(listening(url) for url in children)


def check_revocation_reaches_the_regions(state: Path, router: str, region: str) -> None:
    """Regions sharing the router's state dir read its revocations (gateway.store)."""
    created = run_cli("keys", "create", "eve", "--state-dir", str(state))
    secret = next(word for word in created.split() if word.startswith("gg_"))
    key_id = created.split("(id ")[1].split(")")[0]
    status, answer, _ = request_json(
        "POST", router + "/v1/token", {"Authorization": f"token {secret}"}
    )
    assert status == 200
    auth = {"Authorization": f"Bearer {answer['token']}"}
    assert request_json("GET", region + "/api/tags", auth)[0] == 200
    run_cli("keys", "revoke", key_id, "--state-dir", str(state))
    assert (
        request_json("POST", router + "/v1/token", {"Authorization": f"token {secret}"})[0] == 401
    )
    deadline = time.monotonic() + 5
    while request_json("GET", region + "/api/tags", auth)[0] != 401:
        assert time.monotonic() < deadline, "the region still accepts a revoked key's token"
        time.sleep(0.1)


def run_cli(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def body() -> bytes:
    return json.dumps({**json.loads(generate_body(3)), "stream": False}).encode()
