"""API keys become tokens: the router's half of authentication.

    POST /v1/token, copilot_internal   `TokenIssuer.issue`: read the key from the
                                       store every time (a revoked key is refused
                                       at once), mint a fresh token
    forward mode                       `TokenIssuer.grant`: the same, cached per
                                       key, so the hot path neither reads the
                                       store nor signs a token per request

A cached grant is re-minted `refresh_margin` seconds before its token expires,
and its key re-read from the store every `recheck` seconds. In between, a
revocation arrives through the store's `RevocationCache` (about 1 s), and every
cached grant is checked against it on every request.

Tokens minted here carry `jti = "<key_id>.<nonce>"` (`token_id_for`), so that
revoking the key revokes every token it minted, wherever they are checked.
Secrets are never kept: the cache is keyed by the key's SHA-256, as the store is.

Nothing a client sends can make the store work at line rate:

    failed lookups   `FailureLimiter`: at most `failed_lookups_per_minute` per
                     client address (a token bucket); past it a 429 with
                     Retry-After, before any store read. A key known good (its
                     grant cached) is not limited, so a developer behind the
                     same NAT as an attacker keeps working; a good key not yet
                     cached is refused while its address is limited.
    unknown keys     remembered by digest for `negative_cache_seconds`
                     (`Recent`): a repeat costs no store read, yet counts as a
                     failed lookup. Only refusals are remembered, so a
                     revocation still takes effect at once; a key created
                     meanwhile works after at most that long.
    last_used_at     written at most every `last_used_interval` per key (the
                     lookup still reads the record, so a revoked key is
                     still refused at once).
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.auth import DEFAULT_SCOPE, RevocationCheck, mint
from gateway.errors import NoCapacity, RateLimited, Unauthorized
from gateway.store import KEY_PREFIX, KeyRecord, StoreError, key_digest, token_id_for
from router.keyring import KeyRing
from router.settings import TokenSettings


class KeyLookup(Protocol):
    """The part of a `gateway.store.Store` the issuer needs."""

    async def find_key(self, secret: str, *, touch: bool = True) -> KeyRecord | None: ...


@dataclass(frozen=True, slots=True)
class Grant:
    """A token minted for an API key, and when the key was last read."""

    key_id: str
    user: str
    token: str
    token_id: str
    expires_at: float  # unix seconds
    checked_at: float  # unix seconds

    def refresh_in(self, now: float) -> int:
        """When a client should fetch the next token: well before this one expires.

        Half the time left, and at least two minutes before expiry: the Copilot
        extension treats `now + refresh_in + 60` as the token's expiry.
        """
        left = self.expires_at - now
        return max(1, int(min(left / 2, left - 120)))


def is_api_key(credential: str) -> bool:
    """API keys are `gg_...`; anything else presented as a bearer is a JWT."""
    return credential.startswith(KEY_PREFIX)


def client_key(address: str | None) -> str:
    """Whose budget of failed lookups a socket peer spends: its address, an IPv6
    address by its /64 (one host often holds a whole /64 and could otherwise
    take a fresh address per try). No address (a Unix socket): one shared key."""
    if not address:
        return "-"
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:  # a dual-stack socket's IPv4 peer
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


class FailureLimiter:
    """Failed key lookups per client address: a token bucket per address, plain data.

    An address may fail `per_minute` times at once, then once every
    60/`per_minute` s. A lookup takes a token before the store is asked and is
    refunded when the key is found, so concurrent lookups cannot overshoot.
    At most `max_addresses` buckets are kept; the one untouched longest goes
    first (forgetting a budget never refuses anyone). `per_minute` 0: off.
    """

    def __init__(self, per_minute: int, max_addresses: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_addresses = max(1, max_addresses)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, address: str, now: float) -> float:
        """0.0 with a token taken, or the seconds until `address` may try again."""
        if self.capacity <= 0:
            return 0.0
        tokens = self._level(address, now)
        if tokens < 1.0:
            # Refused tries take nothing: hammering does not push the reopening back.
            self._keep(address, tokens, now)
            return (1.0 - tokens) / self.rate
        self._keep(address, tokens - 1.0, now)
        return 0.0

    def refund(self, address: str, now: float) -> None:
        """Give back the token of a lookup that found its key."""
        if self.capacity <= 0:
            return
        tokens = self._level(address, now) + 1.0
        if tokens >= self.capacity:
            self._buckets.pop(address, None)  # full: as if never seen
        else:
            self._keep(address, tokens, now)

    def __len__(self) -> int:
        return len(self._buckets)

    def __repr__(self) -> str:
        return f"<FailureLimiter addresses={len(self._buckets)}/{self.max_addresses}>"

    def _level(self, address: str, now: float) -> float:
        entry = self._buckets.get(address)
        if entry is None:
            return self.capacity
        tokens, at = entry
        return min(self.capacity, tokens + max(0.0, now - at) * self.rate)

    def _keep(self, address: str, tokens: float, now: float) -> None:
        self._buckets[address] = (tokens, now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)


class Recent:
    """Key digests, each remembered for `ttl` s, at most `size` (the oldest go first).

    The same `ttl` for every entry keeps insertion order the order of expiry.
    """

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl = ttl
        self.size = max(1, size)
        self._until: OrderedDict[str, float] = OrderedDict()

    def holds(self, digest: str, now: float) -> bool:
        until = self._until.get(digest)
        if until is None:
            return False
        if until <= now:
            del self._until[digest]
            return False
        return True

    def add(self, digest: str, now: float) -> None:
        if self.ttl <= 0:
            return
        self._until.pop(digest, None)
        self._until[digest] = now + self.ttl
        while len(self._until) > self.size:
            self._until.popitem(last=False)

    def discard(self, digest: str) -> None:
        self._until.pop(digest, None)

    def __len__(self) -> int:
        return len(self._until)


class TokenIssuer:
    """Mints tokens for API keys found in the store; caches them for forward mode."""

    def __init__(
        self,
        store: KeyLookup,
        keyring: KeyRing,
        revocations: RevocationCheck,
        settings: TokenSettings,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
        on_failed_lookup: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._revocations = revocations
        self._settings = settings
        self._clock = clock
        self._cache: OrderedDict[str, Grant] = OrderedDict()
        self._cache_size = cache_size
        self._limiter = FailureLimiter(
            settings.failed_lookups_per_minute, settings.lookup_limiter_addresses
        )
        self._unknown = Recent(settings.negative_cache_seconds, settings.negative_cache_entries)
        self._used = Recent(settings.last_used_interval, cache_size)  # last_used_at written
        # Told "limited", "negative_cached" or "looked_up" per failed lookup (a metric).
        self._on_failed_lookup = on_failed_lookup or (lambda outcome: None)
        self.refresh_margin = max(60.0, settings.lifetime / 5)
        self.minted = 0

    async def issue(self, secret: str, address: str | None = None) -> Grant:
        """A fresh token for `secret`, the key read from the store now.

        `address` is the client's socket peer, whose failed lookups are limited.
        """
        digest = key_digest(self._checked(secret))
        grant = self._mint(await self._lookup(secret, digest, address))
        self._remember(digest, grant)
        return grant

    async def grant(self, secret: str, address: str | None = None) -> Grant:
        """A valid token for `secret`, from the cache when it can be."""
        digest = key_digest(self._checked(secret))
        now = self._clock()
        grant = self._cache.get(digest)
        if grant is not None and self._revocations.is_revoked(grant.token_id, grant.user):
            del self._cache[digest]
            raise Unauthorized("API key revoked", reason="revoked")
        if grant is None or now - grant.checked_at > self._settings.recheck:
            grant = self._mint(await self._lookup(secret, digest, address))
            self._remember(digest, grant)
        elif grant.expires_at - now < self.refresh_margin:
            record = KeyRecord(key_id=grant.key_id, user=grant.user, created_at=0.0)
            grant = self._mint(record, checked_at=grant.checked_at)
            self._remember(digest, grant)
        return grant

    def _checked(self, secret: str) -> str:
        if not is_api_key(secret):
            raise Unauthorized("not a Ghostgate API key", reason="malformed")
        return secret

    async def _lookup(self, secret: str, digest: str, address: str | None) -> KeyRecord:
        """The key's record from the store, behind the limiter and the negative cache."""
        now = self._clock()
        known = digest in self._cache  # worked recently: its lookup is not limited
        budget = client_key(address)
        if not known:
            wait = self._limiter.take(budget, now)
            if wait:
                self._on_failed_lookup("limited")
                raise RateLimited("too many failed API key lookups", retry_after=wait)
        if self._unknown.holds(digest, now):
            self._on_failed_lookup("negative_cached")
            raise Unauthorized("unknown or revoked API key", reason="unknown_key")
        touch = not self._used.holds(digest, now)
        try:
            record = await self._store.find_key(secret, touch=touch)
        except StoreError as exc:
            if not known:  # the store's failure, not the client's
                self._limiter.refund(budget, now)
            raise NoCapacity("API key store unavailable", retry_after=2) from exc
        if record is None:
            # Unknown, or revoked since: either way nothing of it stays usable.
            self._unknown.add(digest, now)
            self._cache.pop(digest, None)
            self._used.discard(digest)
            self._on_failed_lookup("looked_up")
            raise Unauthorized("unknown or revoked API key", reason="unknown_key")
        if not known:
            self._limiter.refund(budget, now)
        if touch:
            self._used.add(digest, now)
        return record

    def _mint(self, record: KeyRecord, checked_at: float | None = None) -> Grant:
        now = self._clock()
        token_id = token_id_for(record.key_id)
        token, claims = mint(
            self._keyring.signer(),
            record.user,
            issuer=self._settings.issuer,
            audience=self._settings.audience,
            # An API key is an editor's: completions and chat, never admin.
            scope=DEFAULT_SCOPE,
            lifetime=self._settings.lifetime,
            now=now,
            token_id=token_id,
        )
        self.minted += 1
        return Grant(
            key_id=record.key_id,
            user=record.user,
            token=token,
            token_id=token_id,
            expires_at=float(claims["exp"]),
            checked_at=now if checked_at is None else checked_at,
        )

    def _remember(self, digest: str, grant: Grant) -> None:
        self._cache[digest] = grant
        self._cache.move_to_end(digest)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def __repr__(self) -> str:
        return f"<TokenIssuer cached={len(self._cache)} minted={self.minted}>"
