"""Starting a simulated Ollama worker as a child process, the way `ghostgate up` runs them.

The child is `python -m workers.sim ... --port 0`; its single ready line on
stdout says which port it got, so there is no port race. It runs under
`workers.process.Child`: the kernel kills it if this process dies
(PR_SET_PDEATHSIG), and `stop` is SIGTERM, a grace period, then SIGKILL.

    with start_sim(["--parallel", "2"], log_path=Path("sim.log")) as sim:
        urllib.request.urlopen(sim.url + "/api/tags")
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from workers.process import Child, ChildFailed, StopsOnExit
from workers.sim import READY_PREFIX


def sim_command(
    extra_args: Sequence[str] = (), *, host: str = "127.0.0.1", python: str = sys.executable
) -> list[str]:
    """The argv of a simulated worker; `extra_args` come last, so they win (e.g. `--port`)."""
    return [python, "-m", "workers.sim", "--host", host, "--port", "0", *extra_args]


def parse_ready_line(line: str) -> str | None:
    """The base URL announced by a ready line, or None if `line` is not one."""
    line = line.strip()
    if not line.startswith(READY_PREFIX):
        return None
    url = line[len(READY_PREFIX) :]
    return url if url.startswith("http://") else None


class SimHandle(StopsOnExit):
    """A running simulated worker: its URL and process. A context manager that stops it."""

    def __init__(self, url: str, child: Child) -> None:
        self.url = url
        self.child = child

    @property
    def pid(self) -> int:
        return self.child.pid

    def alive(self) -> bool:
        return self.child.alive()

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM, up to `grace` seconds, then SIGKILL; returns the exit code (0 when clean)."""
        return self.child.stop(grace)

    def kill(self) -> None:
        """SIGKILL now: a worker dying, for failure tests."""
        self.child.kill()
        self.child.stop()  # reaps and closes the stdout pipe

    def __repr__(self) -> str:
        return f"<SimHandle {self.url} pid={self.pid} {'alive' if self.alive() else 'exited'}>"


def start_sim(
    extra_args: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    log_path: Path | None = None,
    timeout: float = 15.0,
    python: str = sys.executable,
    name: str = "ghostgate-sim",
) -> SimHandle:
    """Start a simulated worker and wait for its ready line.

    `extra_args` are `python -m workers.sim` flags (`--fast`, `--parallel 2`, ...).
    Its stderr goes to `log_path` (or nowhere). Raises `ChildFailed`, with the
    log's tail, if it exits or stays silent for `timeout` seconds.
    """
    child = Child.start(
        name, sim_command(extra_args, host=host, python=python), log_path=log_path, stdout_pipe=True
    )
    try:
        line = child.read_line(timeout)
        url = parse_ready_line(line)
        if url is None:
            raise child.failure(f"printed {line!r} instead of a ready line")
    except BaseException:
        child.stop(grace=1.0)
        raise
    return SimHandle(url, child)


__all__ = ["ChildFailed", "SimHandle", "parse_ready_line", "sim_command", "start_sim"]
