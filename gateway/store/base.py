"""What every store offers, the records it speaks in, and its exceptions.

    StoreError              base: nothing above the store catches redis.* or sqlite3.*
    ├── StoreUnavailable    Redis did not answer in time or refused (ResilientStore falls back)
    └── StoreCorrupted      a record could not be read or written (SQLite failure, bad data)

API keys are `gg_` + base64url(32 random bytes). Only their SHA-256 (hex) is
stored; a lookup hashes the presented secret and finds the record by that
digest, so no secret is ever compared byte by byte. A key also has a `key_id`:
12 hex digits drawn independently, shown in listings and used to revoke.

Tokens minted from an API key carry `jti = "<key_id>.<nonce>"` (see
`token_id_for`); revoking the key therefore revokes every token it minted, and
`RevocationCache` checks that in O(1). A jti without a dot (tokens minted by
`ghostgate token` from the signing key) can only be revoked one by one.

Redis layout (every name under `ghostgate:`):

    key:<sha256>        hash  key_id, user, created_at, revoked_at, last_used_at
    keys                hash  key_id -> sha256 (to list and to revoke by id)
    revoked             set   revoked key ids
    revoked:tokens      zset  revoked jti -> expiry (unix s), pruned as they expire
    rate:<user>         zset  sliding-window log: one member per allowed request, score ms
    streams:<user>      zset  stream leases: lease id -> expiry ms, renewed by the holder
    hb:<region>         str   heartbeat JSON, with the publisher's TTL
    regions             set   region names that ever sent a heartbeat
    cache:<key>         str   completion cache entry, with its TTL
    cancel:<instance>   pub/sub channel of cancel messages (JSON)

Rate limit: a sliding-window log in one Lua script, so it is exact and atomic
across every instance sharing the Redis (no boundary burst of 2x as with fixed
windows); memory is one entry per allowed request in the window, which at
per-minute limits in the tens to hundreds is small. Time is Redis' own `TIME`,
so instances with skewed clocks still agree.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, Self

from gateway.errors import RateLimited

KEY_PREFIX = "gg_"
KEY_BYTES = 32

Payload = dict[str, object]


class StoreError(Exception):
    """Base of every error a store raises."""


class StoreUnavailable(StoreError):
    """The shared backend (Redis) is away or too slow; local state may answer instead."""


class StoreCorrupted(StoreError):
    """A record could not be read or written: the file or the data is bad."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as listed: everything but the secret."""

    key_id: str
    user: str
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The answer of a rate limiter for one request."""

    allowed: bool
    retry_after: float
    remaining: int

    def check(self) -> None:
        """Raise `RateLimited` (429 with Retry-After) when the request is not allowed."""
        if not self.allowed:
            raise RateLimited("rate limit exceeded", retry_after=self.retry_after)


@dataclass(frozen=True, slots=True)
class Revocations:
    """Revoked API key ids and revoked single tokens (jti), as one snapshot."""

    keys: frozenset[str] = frozenset()
    tokens: frozenset[str] = frozenset()

    def covers(self, token_id: str) -> bool:
        """Whether a token with this jti is revoked, itself or through its API key."""
        if token_id in self.tokens:
            return True
        key_id, dot, _ = token_id.partition(".")
        return bool(dot) and key_id in self.keys

    def __or__(self, other: Revocations) -> Revocations:
        return Revocations(self.keys | other.keys, self.tokens | other.tokens)


def new_secret() -> str:
    """A fresh API key secret: shown once, never stored."""
    raw = secrets.token_bytes(KEY_BYTES)
    return KEY_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def key_digest(secret: str) -> str:
    """The only form in which a key is stored: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key_id() -> str:
    """An id for listings and revocation; random, so it says nothing about the secret."""
    return secrets.token_hex(6)


def new_key(user: str, now: float) -> tuple[KeyRecord, str, str]:
    """A new key's record, its secret and the secret's digest."""
    if not user:
        raise ValueError("an API key needs a user")
    secret = new_secret()
    return KeyRecord(key_id=new_key_id(), user=user, created_at=now), secret, key_digest(secret)


def token_id_for(key_id: str) -> str:
    """The `jti` of a token minted from API key `key_id`: `<key_id>.<nonce>`."""
    return f"{key_id}.{secrets.token_urlsafe(12)}"


def key_id_of(token_id: str) -> str | None:
    """The API key id inside a jti, or None for tokens not minted from a key."""
    key_id, dot, _ = token_id.partition(".")
    return key_id if dot else None


class Store(Protocol):
    """The shared state a region or the router uses; opened and closed with `async with`."""

    @property
    def degraded(self) -> bool:
        """True while answers come from local state because the shared backend is away."""
        ...

    def status(self) -> dict[str, object]:
        """A snapshot for /readyz and metrics."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def create_key(self, user: str) -> tuple[KeyRecord, str]: ...
    # `touch`: also write the key's `last_used_at` (the router writes it once a minute).
    async def find_key(self, secret: str, *, touch: bool = True) -> KeyRecord | None: ...
    async def list_keys(self) -> list[KeyRecord]: ...
    async def revoke_key(self, key_id: str) -> bool: ...
    async def revoke_token(self, token_id: str, expires_at: float) -> None: ...
    async def revocations(self) -> Revocations: ...

    def assume_revoked(self, revocations: Revocations) -> None:
        """Revocations known from before this process (RevocationCache's file), in
        force until the shared backend answers; the embedded store needs none."""
        ...

    async def require_durable(self) -> None:
        """Raise a `StoreError` unless every key and revocation written through this
        store is in the store it was asked to use (Redis, not only the local copy)."""
        ...

    async def rate_limit(self, user: str, limit: int, window: float = 60.0) -> RateDecision: ...
    # `n` streams at once (a request with n choices), all or none.
    async def acquire_stream(self, user: str, limit: int, n: int = 1) -> bool: ...
    async def release_stream(self, user: str, n: int = 1) -> None: ...
    async def publish_heartbeat(self, region: str, payload: Payload, ttl: float) -> None: ...
    async def heartbeats(self) -> dict[str, Payload]: ...
    async def cache_get(self, key: str) -> bytes | None: ...
    async def cache_set(self, key: str, value: bytes, ttl: float) -> None: ...
    async def publish_cancel(self, instance: str, message: Payload) -> None: ...

    def subscribe_cancels(
        self, instance: str
    ) -> AbstractAsyncContextManager[AsyncIterator[Payload]]:
        """Subscribed on entry (messages published after it are delivered), closed on exit."""
        ...
