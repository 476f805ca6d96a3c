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
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.auth import RevocationCheck, mint
from gateway.errors import NoCapacity, Unauthorized
from gateway.store import KEY_PREFIX, KeyRecord, StoreError, key_digest, token_id_for
from router.keyring import KeyRing
from router.settings import TokenSettings


class KeyLookup(Protocol):
    """The part of a `gateway.store.Store` the issuer needs."""

    async def find_key(self, secret: str) -> KeyRecord | None: ...


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
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._revocations = revocations
        self._settings = settings
        self._clock = clock
        self._cache: OrderedDict[str, Grant] = OrderedDict()
        self._cache_size = cache_size
        self.refresh_margin = max(60.0, settings.lifetime / 5)
        self.minted = 0

    async def issue(self, secret: str) -> Grant:
        """A fresh token for `secret`, the key read from the store now."""
        digest = key_digest(self._checked(secret))
        grant = self._mint(await self._lookup(secret))
        self._remember(digest, grant)
        return grant

    async def grant(self, secret: str) -> Grant:
        """A valid token for `secret`, from the cache when it can be."""
        digest = key_digest(self._checked(secret))
        now = self._clock()
        grant = self._cache.get(digest)
        if grant is not None and self._revocations.is_revoked(grant.token_id, grant.user):
            del self._cache[digest]
            raise Unauthorized("API key revoked", reason="revoked")
        if grant is None or now - grant.checked_at > self._settings.recheck:
            grant = self._mint(await self._lookup(secret))
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

    async def _lookup(self, secret: str) -> KeyRecord:
        try:
            record = await self._store.find_key(secret)
        except StoreError as exc:
            raise NoCapacity("API key store unavailable", retry_after=2) from exc
        if record is None:
            raise Unauthorized("unknown or revoked API key", reason="unknown_key")
        return record

    def _mint(self, record: KeyRecord, checked_at: float | None = None) -> Grant:
        now = self._clock()
        token_id = token_id_for(record.key_id)
        token, claims = mint(
            self._keyring.signer(),
            record.user,
            issuer=self._settings.issuer,
            audience=self._settings.audience,
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
