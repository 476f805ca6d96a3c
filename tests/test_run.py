"""`python run.py`: the one-command cluster comes up, works, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import ollama
import pytest

from tests.e2e import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (the test's own state dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def listening(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def wait_for_file(path: Path, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            output = process.communicate(timeout=5)[0] if process.poll() is not None else ""
            raise AssertionError(f"no {path.name}; run.py output:\n{output}")
        time.sleep(0.1)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_up_serves_then_stops_cleanly(tmp_path: Path, signum: int) -> None:
    state = tmp_path / "state"
    port, router_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "run.py",
            "--backend",
            "sim",
            "--state-dir",
            str(state),
            "--port",
            str(port),
            "--router-port",
            str(router_port),
            "--sim-arg=--load-seconds=0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_file(state / "run.json", process, 30)
        info = json.loads((state / "run.json").read_text())
        assert (state / "run.json").stat().st_mode & 0o777 == 0o600
        assert info["backend"] == "sim" and list(info["regions"]) == ["us-west"]
        # `up` runs the router in front of the region, with a ready API key.
        assert info["router"] == f"http://127.0.0.1:{router_port}"
        assert info["api_key"].startswith("gg_")
        url = info["regions"]["us-west"]
        assert url == f"http://127.0.0.1:{port}"
        token = subprocess.run(
            [sys.executable, "run.py", "token", "bob", "--state-dir", str(state)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        with ollama.Client(host=url, headers={"Authorization": f"Bearer {token}"}) as client:
            assert client.generate(model="starcoder2:3b", prompt="def f():", stream=False).done
        assert processes_mentioning(str(state))
        children = [url, info["router"], *info["backends"]["us-west"]]
        assert all(listening(u) for u in children)
        process.send_signal(signum)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "SIMULATED" in output and "token" in output
    assert processes_mentioning(str(state)) == []
    assert not any(listening(u) for u in children)  # no worker left behind either
