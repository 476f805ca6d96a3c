"""Launching workers as processes: the simulated one, and `ollama serve` (through a stand-in)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from workers.launch import parse_ready_line, sim_command, start_sim
from workers.ollama import (
    OllamaNotFound,
    OllamaSettings,
    find_ollama,
    ollama_env,
    probe_backend,
    probe_ollama,
    start_ollama,
)
from workers.process import Child


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may linger if PID 1 does not reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while running(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def test_ready_line_and_command() -> None:
    assert parse_ready_line("ghostgate-sim listening on http://127.0.0.1:4321\n") == (
        "http://127.0.0.1:4321"
    )
    assert parse_ready_line("something else") is None
    argv = sim_command(["--port", "9"], python="py")
    assert argv[:3] == ["py", "-m", "workers.sim"] and argv[-2:] == ["--port", "9"]


def test_start_sim_serves_and_stops_leaving_no_process(tmp_path: Path) -> None:
    log = tmp_path / "sim.log"
    with start_sim(["--parallel", "2", "--load-seconds", "0"], log_path=log) as sim:
        assert sim.url.startswith("http://127.0.0.1:") and sim.alive()
        assert probe_ollama(sim.url)
        probe = probe_backend(sim.url)
        assert probe is not None and probe.version == "0.12.6" and probe.simulated
        assert get_json(sim.url + "/sim/stats")["parallel"] == 2
        pid = sim.pid
    assert sim.child.process.returncode == 0  # SIGTERM is a clean exit
    wait_gone(pid)
    assert "SIMULATED" in log.read_text()
    assert not probe_ollama(sim.url, timeout=0.5)


def test_sigint_is_a_clean_exit_too() -> None:
    child = Child.start("sim", sim_command(), stdout_pipe=True)
    try:
        assert parse_ready_line(child.read_line(15.0))
        child.process.send_signal(signal.SIGINT)
        assert child.process.wait(10) == 0
    finally:
        child.stop()


def test_the_worker_dies_with_its_parent() -> None:
    parent_code = (
        "import sys, time\n"
        "from workers.launch import start_sim\n"
        "sim = start_sim()\n"
        "print(sim.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert running(pid)
        parent.kill()  # no cleanup runs: only the kernel's parent-death signal can stop it
        parent.wait()
        wait_gone(pid)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_a_missing_ollama_binary_is_a_clear_error() -> None:
    with pytest.raises(OllamaNotFound) as info:
        find_ollama("/nonexistent/ollama")
    assert "/nonexistent/ollama" in str(info.value) and "--backend sim" in str(info.value)


def test_ollama_env() -> None:
    env = ollama_env("0.0.0.0", 11500, OllamaSettings(num_parallel=3), base={"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "OLLAMA_HOST": "0.0.0.0:11500",
        "OLLAMA_NUM_PARALLEL": "3",
        "OLLAMA_MAX_QUEUE": "512",
        "OLLAMA_KEEP_ALIVE": "30m",
    }


def test_start_ollama_runs_serve_with_its_environment(tmp_path: Path) -> None:
    # A stand-in binary: `ollama serve` semantics (address and limits from the
    # environment), served by the simulated worker, which reads OLLAMA_* as Ollama does.
    fake = tmp_path / "ollama"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "assert sys.argv[1:] == ['serve'], sys.argv\n"
        "host, port = os.environ['OLLAMA_HOST'].rsplit(':', 1)\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'workers.sim', '--host', host,\n"
        "                          '--port', port])\n"
    )
    fake.chmod(0o755)
    port = free_port()
    settings = OllamaSettings(num_parallel=3, max_queue=7, keep_alive="1m")
    log = tmp_path / "ollama.log"
    with start_ollama(port, binary=fake, settings=settings, log_path=log, timeout=15) as ollama:
        assert ollama.url == f"http://127.0.0.1:{port}" and ollama.version == "0.12.6"
        stats = get_json(ollama.url + "/sim/stats")
        assert (stats["parallel"], stats["max_queue"]) == (3, 7)
        pid = ollama.pid
    assert ollama.child.process.returncode == 0
    wait_gone(pid)


def test_probe_of_nothing_is_false() -> None:
    assert not probe_ollama(f"http://127.0.0.1:{free_port()}", timeout=0.5)
