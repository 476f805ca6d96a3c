"""Token verification keys from the router's JWKS, kept fresh (`--jwks URL`).

A region started with `--jwks URL` trusts the keys the router publishes at
`/.well-known/jwks.json`, plus any key files it was given. `JwksRefresher`
fetches the document when the lifespan opens it, then every `interval` seconds
(60 by default), and early when a token names a key the region does not know:
a rotation it has not seen yet. Early fetches are rate-limited: they are
coalesced and delayed until `min_interval` has passed since the last fetch, so
a stream of tokens with made-up key ids costs the router one request per
`min_interval`, however many arrive, and a real new key is still picked up.

A failed fetch keeps the keys the region already has: a router restart or a
network blip must not lock every developer out. Until the first fetch
succeeds, the refresher retries every `retry` seconds.

Keys are indexed by their RFC 7638 thumbprint (`gateway.auth.tokens.key_id`), which
is also the `kid` the router writes; a JWK's own `kid` field is not trusted.

Exceptions:

    ValueError
    └── JwksError    the document is not a JWKS with at least one Ed25519 key
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.auth.tokens import ALGORITHM, Principal, TokenVerifier, key_id
from gateway.errors import Unauthorized
from gateway.lifecycle import SessionLoop

log = logging.getLogger("ghostgate.jwks")

DEFAULT_INTERVAL = 60.0


class JwksError(ValueError):
    """The JWKS document cannot be used; the message says why."""


def parse_jwks(document: object) -> tuple[Ed25519PublicKey, ...]:
    """The Ed25519 signing keys of a JWKS document; other key types are skipped."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise JwksError("JWKS document has no 'keys' list")
    found = [key for entry in keys if (key := _ed25519(entry)) is not None]
    if not found:
        raise JwksError("JWKS document has no Ed25519 signing key")
    return tuple(found)


def _ed25519(entry: object) -> Ed25519PublicKey | None:
    if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
        return None
    if entry.get("alg", ALGORITHM) != ALGORITHM or entry.get("use", "sig") != "sig":
        return None
    x = entry.get("x")
    if not isinstance(x, str):
        raise JwksError("Ed25519 JWK without an 'x' string")
    try:
        raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise JwksError(f"Ed25519 JWK with a bad 'x': {exc}") from exc


class JwksVerifier(TokenVerifier):
    """A `TokenVerifier` that tells its refresher when a token names an unknown key.

    The token at hand is still refused (verification is synchronous, on the hot
    path); the fetch it triggers lets the next one through.
    """

    on_unknown_key: Callable[[], None] | None = None

    def verify(self, token: str) -> Principal:
        try:
            return super().verify(token)
        except Unauthorized as exc:
            if exc.reason == "unknown_key" and self.on_unknown_key is not None:
                self.on_unknown_key()
            raise


class JwksRefresher(SessionLoop):
    """Keeps a verifier's keys equal to `static_keys` plus the JWKS at `url`.

    Open it with `async with` (the region's lifespan does): it owns its HTTP
    session and its refresh task, and closes both on exit.
    """

    def __init__(
        self,
        url: str,
        verifier: TokenVerifier,
        *,
        static_keys: Iterable[Ed25519PublicKey] = (),
        interval: float = DEFAULT_INTERVAL,
        min_interval: float = 2.0,
        retry: float = 1.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("jwks-refresh", timeout)
        self.url = url
        self.verifier = verifier
        self.static_keys = tuple(static_keys)
        self.interval = interval
        self.min_interval = min_interval
        self.retry = retry
        self.timeout = timeout
        self._clock = clock
        self._wake = asyncio.Event()
        self._last_fetch = -float("inf")
        self.fetched_kids: tuple[str, ...] = ()
        self.fetches = 0
        self.failures = 0
        if isinstance(verifier, JwksVerifier):
            verifier.on_unknown_key = self.request_refresh

    def request_refresh(self) -> None:
        """Fetch soon (rate-limited): a token named a key we do not have."""
        self._wake.set()

    async def refresh(self) -> bool:
        """Fetch the JWKS once; on success trust exactly its keys plus the static ones."""
        self._last_fetch = self._clock()
        self.fetches += 1
        try:
            fetched = parse_jwks(await self._get())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # ValueError covers a body that is not JSON as well as JwksError.
            self.failures += 1
            log.warning("JWKS not refreshed, keeping the current keys: %s", exc)
            return False
        kids = tuple(key_id(key) for key in fetched)
        if kids != self.fetched_kids:
            log.info("JWKS keys changed", extra={"kids": list(kids)})
        self.fetched_kids = kids
        self.verifier.set_keys((*self.static_keys, *fetched))
        return True

    async def _get(self) -> object:
        async with self.session.get(self.url) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def _open(self) -> None:
        await super()._open()  # the session
        await self.refresh()

    async def _loop(self) -> None:
        while True:
            # Step 1: sleep until the periodic refresh is due, or a token
            # names an unknown key (request_refresh sets the event).
            delay = self.interval if self.fetched_kids else self.retry
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            # Step 2: rate limit. Requests that arrive while we wait here are
            # served by the fetch below, so clear the event only after it.
            pause = self._last_fetch + self.min_interval - self._clock()
            if pause > 0:
                await asyncio.sleep(pause)
            self._wake.clear()
            await self.refresh()

    def __repr__(self) -> str:
        return (
            f"<JwksRefresher {self.url} kids={list(self.fetched_kids)} "
            f"fetches={self.fetches} failures={self.failures}>"
        )
