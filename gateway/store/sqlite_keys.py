"""API keys and revocations in `<state-dir>/ghostgate.db`, so they survive restarts.

Only SHA-256 digests of keys are written. The file is created mode 0600 (SQLite
gives its -wal and -shm files the same mode) in WAL mode, so the router, every
region process and the `ghostgate keys` command can share it on one machine:
readers never wait for the writer, and a busy timeout covers writer against
writer.

The methods here are synchronous and each is one or two tiny statements. The
embedded store still runs them through `asyncio.to_thread`: a WAL checkpoint,
an fsync, or another process holding the write lock can stall a call for
milliseconds to seconds, and the event loop that calls them is streaming
completions to other users meanwhile. One connection, guarded by a lock,
serves the worker threads in turn.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from gateway.store.base import KeyRecord, Revocations, StoreCorrupted

MEMORY = ":memory:"
BUSY_TIMEOUT = 2.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id       TEXT PRIMARY KEY,
    digest       TEXT NOT NULL UNIQUE,
    user         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    revoked_at   REAL,
    last_used_at REAL
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    token_id   TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
"""

COLUMNS = "key_id, user, created_at, revoked_at, last_used_at"
Row = tuple[str, str, float, float | None, float | None]


class SqliteKeys:
    """Key records and revocations in one SQLite file (or in memory, for tests)."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self.path = path

    @classmethod
    def open(cls, path: Path | str) -> SqliteKeys:
        """Open (creating, mode 0600) the database at `path`; `":memory:"` for a private one."""
        name = str(path)
        if name != MEMORY:
            _create_private(Path(name))
        try:
            db = sqlite3.connect(name, timeout=BUSY_TIMEOUT, check_same_thread=False)
            db.isolation_level = None  # autocommit: every statement here stands alone
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreCorrupted(f"cannot open the key database {name}: {exc}") from exc
        return cls(db, name)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SqliteKeys({self.path!r})"

    def insert(self, record: KeyRecord, digest: str) -> None:
        """Store a new key (or the same key again, when a degraded write is replayed)."""
        with self._sql() as db:
            db.execute(
                f"INSERT OR IGNORE INTO api_keys (digest, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (digest, *_row(record)),
            )

    def use(self, digest: str, now: float | None) -> KeyRecord | None:
        """The active key with this digest, its `last_used_at` set to `now` unless None;
        None when there is no such key."""
        with self._sql() as db:
            row = db.execute(
                f"SELECT {COLUMNS} FROM api_keys WHERE digest = ? AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
            if row is None:
                return None
            if now is None:
                return _record(row)
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE digest = ?", (now, digest))
        return replace(_record(row), last_used_at=now)

    def list(self) -> list[KeyRecord]:
        with self._sql() as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM api_keys ORDER BY created_at").fetchall()
        return [_record(row) for row in rows]

    def revoke(self, key_id: str, now: float) -> bool:
        """True when this call revoked the key; False when unknown or revoked before."""
        with self._sql() as db:
            cursor = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (now, key_id),
            )
        return cursor.rowcount == 1

    def revoke_token(self, token_id: str, expires_at: float, now: float) -> None:
        """Revoke one jti until it would have expired anyway; forget the expired ones."""
        with self._sql() as db:
            db.execute("DELETE FROM revoked_tokens WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT OR REPLACE INTO revoked_tokens (token_id, expires_at) VALUES (?, ?)",
                (token_id, expires_at),
            )

    def revocations(self, now: float) -> Revocations:
        with self._sql() as db:
            keys = db.execute("SELECT key_id FROM api_keys WHERE revoked_at IS NOT NULL")
            key_ids = frozenset(row[0] for row in keys.fetchall())
            tokens = db.execute("SELECT token_id FROM revoked_tokens WHERE expires_at > ?", (now,))
            token_ids = frozenset(row[0] for row in tokens.fetchall())
        return Revocations(key_ids, token_ids)

    @contextmanager
    def _sql(self) -> Iterator[sqlite3.Connection]:
        # Map sqlite3's errors here so that nothing above the store sees them.
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreCorrupted(f"key database {self.path}: {exc}") from exc


def _create_private(path: Path) -> None:
    """Create the file readable by its owner only, before SQLite opens it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)  # an older file made with a looser umask is tightened too


def _row(record: KeyRecord) -> Row:
    return (
        record.key_id,
        record.user,
        record.created_at,
        record.revoked_at,
        record.last_used_at,
    )


def _record(row: tuple[object, ...]) -> KeyRecord:
    key_id, user, created_at, revoked_at, last_used_at = row
    if not (isinstance(key_id, str) and isinstance(user, str)):
        raise StoreCorrupted("malformed key row")
    return KeyRecord(
        key_id=key_id,
        user=user,
        created_at=_number(created_at) or 0.0,
        revoked_at=_number(revoked_at),
        last_used_at=_number(last_used_at),
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
