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
from typing import Any

import httpx
import ollama
import pytest

from gateway.auth import SigningKeys, mint
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


def start_up(state: Path, *flags: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """`run.py` on a simulated worker, regions only (the fastest cluster); its run.json."""
    argv = [sys.executable, "run.py", "--backend", "sim", "--no-router"]
    argv += ["--state-dir", str(state), "--port", str(free_port()), "--sim-arg=--load-seconds=0"]
    process = subprocess.Popen(
        [*argv, *flags], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_file(state / "run.json", process, 30)
    except BaseException:
        process.kill()
        process.communicate()
        raise
    info: dict[str, Any] = json.loads((state / "run.json").read_text())
    return process, info


def child_pid(parent: int, text: str) -> int:
    """The pid of `parent`'s one child whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and text in cmdline:
            found.append(int(entry.name))
    assert len(found) == 1, f"children of {parent} with {text!r}: {found}"
    return found[0]


def generates(url: str, token: str) -> bool:
    try:
        with ollama.Client(host=url, headers={"Authorization": f"Bearer {token}"}) as client:
            return client.generate(model="starcoder2:3b", prompt="x", stream=False).done is True
    except (ollama.ResponseError, httpx.HTTPError, ConnectionError):
        return False


def wait_generates(url: str, token: str, timeout: float, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while not generates(url, token):
        assert process.poll() is None, "run.py exited"
        assert time.monotonic() < deadline, f"{url} does not generate again"
        time.sleep(0.2)


def test_a_killed_worker_and_region_are_restarted_in_place(tmp_path: Path) -> None:
    state = tmp_path / "state"
    process, info = start_up(state)
    try:
        url, (sim,) = info["regions"]["us-west"], info["backends"]["us-west"]
        token = mint(SigningKeys.load_or_create(state).active, "bob")[0]
        assert generates(url, token)
        worker = child_pid(process.pid, "workers.sim")
        os.kill(worker, signal.SIGKILL)
        # Back on its port, so the region, which knows it by URL, uses it again.
        wait_generates(url, token, 20, process)
        assert child_pid(process.pid, "workers.sim") != worker and listening(sim)
        region = child_pid(process.pid, "-m gateway")
        os.kill(region, signal.SIGKILL)
        wait_generates(url, token, 20, process)
        assert child_pid(process.pid, "-m gateway") != region
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "sim-us-west-0 was killed by SIGKILL (exit code -9); restarting it in 0.5 s" in output
    assert "us-west was killed by SIGKILL (exit code -9); restarting it in 0.5 s" in output
    assert processes_mentioning(str(state)) == []
    assert not listening(url) and not listening(sim)


def test_up_stops_whole_and_fails_when_a_child_cannot_be_kept_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    process, info = start_up(state, "--restarts", "0")
    try:
        os.kill(child_pid(process.pid, "workers.sim"), signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1, output
    assert (
        "ghostgate: sim-us-west-0 was killed by SIGKILL (exit code -9); "
        "giving up: restarting is off"
    ) in output
    assert "stopping the cluster" in output
    assert processes_mentioning(str(state)) == []
    assert not listening(info["regions"]["us-west"])
