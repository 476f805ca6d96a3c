"""Revocations on the hot path: an O(1) local check, kept current in the background.

`TokenVerifier` asks `is_revoked` on every request, synchronously. The answer
comes from a snapshot in memory; a task owned by `async with` re-reads the
store every `interval` (1 s by default): Redis' `ghostgate:revoked` set and
token zset, or the SQLite file that the processes of one state dir share. A
revocation therefore reaches every region within about `interval` plus one
read, well inside the 5 s the design promises, without a pub/sub connection
per process to keep alive. If a read fails, the last snapshot stays in force.

With a `path` (`<state-dir>/revocations.json`), every new snapshot is also
written there (atomically, mode 0600) and the file is read at start, before the
first refresh, and handed to the store (`assume_revoked`). A process restarted
while Redis is away thus still refuses what was revoked before, where an empty
cache and an empty fallback would have refused nothing. The file holds the
store's whole revocation set: one id per revoked key (about 15 bytes, kept
forever) and each revoked token until it expires (tokens live 30 min at most).
Both the read and the writes happen in the lifespan, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Protocol

from gateway.auth import write_private
from gateway.lifecycle import BackgroundLoop, every
from gateway.store.base import Revocations, StoreError

FILE_NAME = "revocations.json"
log = logging.getLogger("ghostgate.store")


class RevocationSource(Protocol):
    """What the cache reads: every `Store` is one."""

    async def revocations(self) -> Revocations: ...

    def assume_revoked(self, revocations: Revocations) -> None: ...


def revocations_file(state_dir: Path | None) -> Path | None:
    """Where a process of `state_dir` keeps its last known revocations (None: nowhere)."""
    return None if state_dir is None else state_dir / FILE_NAME


def encode(revocations: Revocations) -> bytes:
    """The file's content: sorted, so that equal snapshots are equal files."""
    document = {"keys": sorted(revocations.keys), "tokens": sorted(revocations.tokens)}
    return json.dumps(document, separators=(",", ":")).encode()


def decode(data: bytes) -> Revocations:
    """The file's content as a snapshot; `ValueError` if it is not one."""
    document = json.loads(data)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    keys, tokens = document.get("keys", []), document.get("tokens", [])
    for name, ids in (("keys", keys), ("tokens", tokens)):
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"{name} must be a list of strings")
    return Revocations(frozenset(keys), frozenset(tokens))


def load(path: Path) -> Revocations | None:
    """The snapshot saved at `path`; None if there is none or it cannot be read."""
    try:
        return decode(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring the saved revocations in %s: %s", path, exc)
        return None


class RevocationCache(BackgroundLoop):
    """A `gateway.auth.RevocationCheck` over a snapshot refreshed every `interval` s."""

    def __init__(
        self, source: RevocationSource, *, interval: float = 1.0, path: Path | None = None
    ) -> None:
        super().__init__("revocation-refresh")
        self.source = source
        self.interval = interval
        self.path = path
        self.snapshot = Revocations()
        self.refreshed_at: float | None = None
        self._saved: Revocations | None = None  # what the file holds, as read or written
        self._save_failed = False  # to log a failing disk once, not every second

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
        await self._save()

    async def _save(self) -> None:
        snapshot = self.snapshot
        if self.path is None or snapshot == self._saved:
            return
        try:
            await asyncio.to_thread(write_private, self.path, encode(snapshot))
        except OSError as exc:
            if not self._save_failed:
                log.warning("revocations not saved to %s: %s", self.path, exc)
            self._save_failed = True
            return
        self._saved, self._save_failed = snapshot, False

    async def _open(self) -> None:
        if self.path is not None:
            last = await asyncio.to_thread(load, self.path)
            if last is not None:
                self.snapshot = self._saved = last
                self.source.assume_revoked(last)  # for key lookups while Redis is away
        await self.refresh()  # the first request already sees what is revoked

    async def _loop(self) -> None:
        await every(self.interval, self.refresh)
