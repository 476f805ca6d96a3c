"""Revocations on the hot path: an O(1) local check, kept current in the background.

`TokenVerifier` asks `is_revoked` on every request, synchronously. The answer
comes from a snapshot in memory; a task owned by `async with` re-reads the
store every `interval` (1 s by default): Redis' `ghostgate:revoked` set and
token zset, or the SQLite file that the processes of one state dir share. A
revocation therefore reaches every region within about `interval` plus one
read, well inside the 5 s the design promises, without a pub/sub connection
per process to keep alive. If a read fails, the last snapshot stays in force.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from gateway.lifecycle import BackgroundLoop, every
from gateway.store.base import Revocations, StoreError

log = logging.getLogger("ghostgate.store")


class RevocationSource(Protocol):
    """What the cache reads: every `Store` is one."""

    async def revocations(self) -> Revocations: ...


class RevocationCache(BackgroundLoop):
    """A `gateway.auth.RevocationCheck` over a snapshot refreshed every `interval` s."""

    def __init__(self, source: RevocationSource, *, interval: float = 1.0) -> None:
        super().__init__("revocation-refresh")
        self.source = source
        self.interval = interval
        self.snapshot = Revocations()
        self.refreshed_at: float | None = None

    def is_revoked(self, token_id: str, subject: str) -> bool:
        """Whether the token, or the API key that minted it, is revoked. O(1), no I/O."""
        return self.snapshot.covers(token_id)

    def age(self) -> float | None:
        """Seconds since the last good read, for /readyz; None before the first."""
        return None if self.refreshed_at is None else time.monotonic() - self.refreshed_at

    def __repr__(self) -> str:
        keys, tokens = len(self.snapshot.keys), len(self.snapshot.tokens)
        return f"RevocationCache(keys={keys}, tokens={tokens}, age={self.age()})"

    async def refresh(self) -> None:
        """Read the store once; on failure keep the snapshot and say so in the log."""
        try:
            self.snapshot = await self.source.revocations()
        except StoreError as exc:
            log.warning("revocations not refreshed, keeping the last ones: %s", exc)
            return
        self.refreshed_at = time.monotonic()

    async def _open(self) -> None:
        await self.refresh()  # the first request already sees what is revoked

    async def _loop(self) -> None:
        await every(self.interval, self.refresh)
