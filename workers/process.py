"""Child processes that cannot outlive their parent.

Every process Ghostgate starts (simulated workers, `ollama serve`, region
proxies) goes through `Child`: its output goes to a log file, it receives
SIGKILL from the kernel if its parent dies without cleaning up (Linux
`PR_SET_PDEATHSIG`), and `stop` asks politely (SIGTERM, so a region can drain)
before it insists (SIGKILL).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ChildFailed(RuntimeError):
    """A child exited or never became ready; the message ends with its log's tail."""


class StopsOnExit(ABC):
    """Mixin of an owner of processes: `with obj:` returns `obj` and calls
    `obj.stop()` on the way out, however the block is left."""

    @abstractmethod
    def stop(self) -> object:
        """Stop what this object owns."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Child(StopsOnExit):
    """One supervised process. Use as a context manager, or call `stop`."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log_path: Path | None) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdout_pipe: bool = False,
    ) -> Child:
        """Start `argv`; stderr (and stdout unless piped) go to `log_path`."""
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                env=dict(env) if env is not None else None,
                preexec_fn=_die_with_parent,
            )
        finally:
            if log_path:
                log.close()  # type: ignore[union-attr]
        return cls(name, process, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def read_line(self, timeout: float) -> str:
        """The next line of a piped stdout (e.g. a ready line), or `ChildFailed`."""
        stream = self.process.stdout
        if stream is None:
            raise RuntimeError("stdout is not piped")
        deadline = time.monotonic() + timeout
        line = b""
        os.set_blocking(stream.fileno(), False)
        while time.monotonic() < deadline:
            chunk = stream.readline()
            if chunk:
                line += chunk
                if line.endswith(b"\n"):
                    return line.decode().strip()
            elif not self.alive():
                break
            else:
                time.sleep(0.02)
        raise self.failure(f"printed no ready line within {timeout:g} s")

    def failure(self, what: str) -> ChildFailed:
        code = self.process.poll()
        state = f"exited with {code}" if code is not None else "still running"
        return ChildFailed(f"{self.name} {what} ({state}){self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n  " + "\n  ".join(tail) if tail else ""

    def stop(self, grace: float = 15.0) -> int:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL at once: a box dying, for failure tests."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()

    def __repr__(self) -> str:
        return f"<Child {self.name} pid={self.pid} {'alive' if self.alive() else 'exited'}>"
