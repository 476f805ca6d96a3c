"""A throwaway redis-server for the store's tests, and stores opened on it."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from gateway.store.embedded import EmbeddedStore
from gateway.store.redis_store import RedisStore
from gateway.store.resilient import ResilientStore
from tests.e2e import free_port

REDIS_SERVER = "/usr/bin/redis-server"


class RedisServer:
    """A throwaway redis-server on 127.0.0.1, which a test may stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.directory),
                "--enable-debug-command", "local",
                "--logfile", str(self.directory / "redis.log")]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not _answers(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=5)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def resilient(url: str, db: Path | str = ":memory:", **options: Any) -> ResilientStore:
    """A Redis-backed store with its local fallback, as `open_store` makes it."""
    return ResilientStore(RedisStore(url), EmbeddedStore(db), **options)
