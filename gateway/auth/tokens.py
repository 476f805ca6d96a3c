"""Ghostgate's token format: EdDSA (Ed25519) JWTs, minted by the router, verified anywhere.

Claims: `iss`, `aud`="ghostgate", `sub`, `iat`, `nbf`, `exp`, `jti`, `scope`, and
`kid` in the header naming the signing key so keys can rotate. A verifier holds
public keys only, rejects every algorithm but EdDSA (no `none`, no HS* made with
the public key as a secret), any missing claim, a lifetime above the maximum, a
wrong audience or issuer, and revoked tokens.

Nothing one client sends may cost another, so before any parsing a token must be
the one canonical spelling of a compact JWS: three non-empty parts of unpadded
base64url, at most `max_token_bytes` long ("malformed" otherwise). Times must be
integers in range, `sub` and `jti` bounded strings, and `scope` a set of
`KNOWN_SCOPES` ("claims", "scope"). Verified tokens are cached until they
expire, so the hot path checks each token's signature once; the cache is keyed
by the token's SHA-256 and bounded in entries and in bytes, least recently used
first out.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, TypedDict

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from gateway.errors import Forbidden, Unauthorized

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "scope")
DEFAULT_LIFETIME = 600.0
KNOWN_SCOPES = frozenset({"completions", "chat", "admin"})
# What an editor needs; `admin` is only ever asked for by name.
DEFAULT_SCOPE = "completions chat"
MAX_TOKEN_BYTES = 4096
CACHE_BYTES = 16 * 1024 * 1024
MAX_SUBJECT = 256
MAX_TOKEN_ID = 128
# 9999-12-31T23:59:59Z. Bounded so that every comparison with the clock (a
# float) is exact and cannot overflow: 10**400 is a valid JSON integer.
MAX_TIME = 253_402_300_799

# Strict base64url, three non-empty parts, nothing else (no `=`, `+`, `/`,
# whitespace): so no other spelling of a token reaches the JWT library.
_COMPACT = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
# A part of 2 or 3 characters mod 4 ends in a character with 4 or 2 unused
# bits, which an encoder leaves at zero and a lax decoder ignores: requiring
# zero keeps one spelling per token whatever the library's version checks.
_LAST_CHARACTERS = {0: None, 2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}
# Every valid `scope` claim and its set: 15 spellings of 3 scopes, so a lookup
# parses one, and cached principals share the sets.
_SCOPE_SETS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        " ".join(words): frozenset(words)
        for n in range(1, len(KNOWN_SCOPES) + 1)
        for words in itertools.permutations(sorted(KNOWN_SCOPES), n)
    }
)
# What one cache entry costs besides its key and principal: the OrderedDict's
# table slot and link, 75-116 bytes measured with tracemalloc (CPython 3.11).
_ENTRY_OVERHEAD = 128

Clock = Callable[[], float]


class Claims(TypedDict):
    """The JWT payload, as minted and as verified."""

    iss: str
    aud: str
    sub: str
    iat: int
    nbf: int
    exp: int
    jti: str
    scope: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for; what the rest of the gateway sees."""

    subject: str
    scopes: frozenset[str]
    token_id: str
    expires_at: float
    key_id: str


@dataclass(frozen=True, slots=True)
class CacheUsage:
    """The verification cache's size now, and how many entries its bounds evicted."""

    entries: int
    size_bytes: int
    evictions: int


class RevocationCheck(Protocol):
    """Answers whether a token (by its `jti`) or a user has been revoked."""

    def is_revoked(self, token_id: str, subject: str) -> bool: ...


class NoRevocations:
    """The default when no shared store is configured."""

    def is_revoked(self, token_id: str, subject: str) -> bool:
        return False


def key_id(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint of an Ed25519 key: stable, and names the key in `kid`."""
    x = _b64(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The key as published in a JWKS document."""
    x = _b64(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x,
        "kid": key_id(public_key),
        "alg": ALGORITHM,
        "use": "sig",
    }


def mint(
    private_key: Ed25519PrivateKey,
    subject: str,
    *,
    issuer: str = "ghostgate",
    audience: str = "ghostgate",
    scope: str = DEFAULT_SCOPE,
    lifetime: float = DEFAULT_LIFETIME,
    now: float | None = None,
    token_id: str | None = None,
) -> tuple[str, Claims]:
    """Sign a token for `subject`; returns the compact JWT and its claims.

    `token_id` becomes the `jti`; tokens minted from an API key pass
    `"<key_id>.<nonce>"` so that revoking the key revokes them. A `scope` no
    verifier would accept is a `ValueError`.
    """
    if scope not in _SCOPE_SETS:
        raise ValueError(f"scope {scope!r}: space-separated, each of {sorted(KNOWN_SCOPES)} once")
    issued = int(time.time() if now is None else now)
    claims: Claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(lifetime),
        "jti": token_id or secrets.token_urlsafe(12),
        "scope": scope,
    }
    kid = key_id(private_key.public_key())
    token = jwt.encode(dict(claims), private_key, algorithm=ALGORITHM, headers={"kid": kid})
    return token, claims


def check_format(token: str, max_bytes: int = MAX_TOKEN_BYTES) -> None:
    """`Unauthorized("malformed")` unless `token` is one canonical compact JWS."""
    match = _COMPACT.fullmatch(token) if len(token) <= max_bytes else None
    if match is None or not all(_canonical(part) for part in match.groups()):
        raise Unauthorized("malformed token", reason="malformed")


def parse_scopes(scope: object) -> frozenset[str]:
    """The set a `scope` claim names: known scopes, space-separated, each once, at least one."""
    scopes = _SCOPE_SETS.get(scope) if isinstance(scope, str) else None
    if scopes is None:
        raise Unauthorized("token scope not recognised", reason="scope")
    return scopes


def allows(principal_scopes: frozenset[str], required: str) -> bool:
    """Whether a token with `principal_scopes` may use a route that needs `required`.

    `admin` implies no other scope: a token minted for operating the service
    is not an editor's credential, and an editor's token never administers.
    A `required` scope that does not exist is a bug in a route table, raised
    as `ValueError` rather than refusing every caller.
    """
    if required not in KNOWN_SCOPES:
        raise ValueError(f"unknown scope {required!r}")
    return required in principal_scopes


def require_scope(principal: Principal, required: str) -> None:
    """`Forbidden` (403) unless the principal's token carries `required`."""
    if not allows(principal.scopes, required):
        raise Forbidden(f"token lacks the {required!r} scope")


class TokenVerifier:
    """Checks bearer tokens against a set of public keys, caching each good token."""

    def __init__(
        self,
        public_keys: Iterable[Ed25519PublicKey],
        *,
        issuer: str = "ghostgate",
        audience: str = "ghostgate",
        max_lifetime: float = 1800.0,
        leeway: float = 30.0,
        max_token_bytes: int = MAX_TOKEN_BYTES,
        cache_size: int = 100_000,
        cache_bytes: int = CACHE_BYTES,
        revocations: RevocationCheck | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        self.issuer = issuer
        self.audience = audience
        self.max_lifetime = max_lifetime
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        self.cache_size = cache_size
        self.cache_bytes = cache_bytes
        self.revocations: RevocationCheck = revocations or NoRevocations()
        self._clock = clock
        # By SHA-256: a fixed 32-byte key whatever the token's length, and no
        # usable bearer token kept in memory (as router/grants.py keeps keys).
        self._cache: OrderedDict[bytes, Principal] = OrderedDict()
        self._cached_bytes = 0
        self._evictions = 0
        self.set_keys(public_keys)

    def set_keys(self, public_keys: Iterable[Ed25519PublicKey]) -> None:
        """Replace the trusted keys (rotation); cached tokens of dropped keys stop working."""
        self._keys = {key_id(key): key for key in public_keys}
        for digest, principal in list(self._cache.items()):
            if principal.key_id not in self._keys:
                self._forget(digest, principal)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    @property
    def cache_usage(self) -> CacheUsage:
        """For the cache gauges, read at scrape time."""
        return CacheUsage(len(self._cache), self._cached_bytes, self._evictions)

    def verify(self, token: str) -> Principal:
        """The principal of a good token; `Unauthorized` with a reason otherwise."""
        # Length and ASCII first (both O(1)): they bound the hashing below.
        if len(token) > self.max_token_bytes or not token.isascii():
            raise Unauthorized("malformed token", reason="malformed")
        now = self._clock()
        digest = hashlib.sha256(token.encode("ascii")).digest()
        principal = self._cache.get(digest)
        if principal is None:
            # Only checked spellings are cached, so a hit needs no regex.
            check_format(token, self.max_token_bytes)
            principal = self._verify_signature(token, now)
            self._remember(digest, principal)
        elif principal.expires_at + self.leeway < now:
            self._forget(digest, principal)
            raise Unauthorized("token expired", reason="expired")
        else:
            self._cache.move_to_end(digest)
        if self.revocations.is_revoked(principal.token_id, principal.subject):
            raise Unauthorized("token revoked", reason="revoked")
        return principal

    def _remember(self, digest: bytes, principal: Principal) -> None:
        self._cache[digest] = principal
        self._cached_bytes += _entry_bytes(digest, principal)
        cache = self._cache
        while cache and (self._cached_bytes > self.cache_bytes or len(cache) > self.cache_size):
            self._forget(*cache.popitem(last=False))
            self._evictions += 1

    def _forget(self, digest: bytes, principal: Principal) -> None:
        self._cache.pop(digest, None)
        self._cached_bytes -= _entry_bytes(digest, principal)

    def _verify_signature(self, token: str, now: float) -> Principal:
        key, kid = self._key_for(token)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                # Times are checked below against our own clock, which tests
                # and the cache share; PyJWT would read the wall clock.
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "verify_iat": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                },
            )
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError) as exc:
            raise Unauthorized("token not issued for this gateway", reason="claims") from exc
        except (InvalidSubjectError, InvalidJTIError) as exc:
            raise Unauthorized("token claims malformed", reason="claims") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token lacks the {exc.claim!r} claim", reason="claims") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("token signature or format invalid", reason="invalid") from exc
        return self._principal(payload, kid, now)

    def _key_for(self, token: str) -> tuple[Ed25519PublicKey, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("malformed token", reason="malformed") from exc
        if header.get("alg") != ALGORITHM:
            raise Unauthorized("token algorithm not accepted", reason="algorithm")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None or not isinstance(kid, str):
            raise Unauthorized("token signed by an unknown key", reason="unknown_key")
        return key, kid

    def _principal(self, payload: Mapping[str, object], kid: str, now: float) -> Principal:
        iat, nbf, exp = (_time(payload, name) for name in ("iat", "nbf", "exp"))
        if exp < iat:
            raise Unauthorized("token expires before it was issued", reason="claims")
        if exp + self.leeway < now:
            raise Unauthorized("token expired", reason="expired")
        if nbf > now + self.leeway:
            raise Unauthorized("token not yet valid", reason="not_yet_valid")
        sub, jti = payload.get("sub"), payload.get("jti")
        if not (isinstance(sub, str) and 0 < len(sub) <= MAX_SUBJECT):
            raise Unauthorized("token subject malformed", reason="claims")
        if not (isinstance(jti, str) and 0 < len(jti) <= MAX_TOKEN_ID):
            raise Unauthorized("token id malformed", reason="claims")
        scopes = parse_scopes(payload.get("scope"))
        if exp - iat > self.max_lifetime:
            raise Unauthorized("token lifetime above the maximum", reason="lifetime")
        if iat > now + self.leeway:
            raise Unauthorized("token issued in the future", reason="not_yet_valid")
        return Principal(
            subject=sub, scopes=scopes, token_id=jti, expires_at=float(exp), key_id=kid
        )


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer|token <t>` header, or `Unauthorized`."""
    if not authorization:
        raise Unauthorized("missing Authorization header", reason="missing")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() not in ("bearer", "token") or not value.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'", reason="malformed")
    return value.strip()


def _time(payload: Mapping[str, object], name: str) -> int:
    value = payload.get(name)
    # `type(...) is int` refuses bool, and the floats JSON gives for 1e308,
    # NaN or Infinity: a NaN `exp` compares false with everything, so never expires.
    if type(value) is not int or not 0 <= value <= MAX_TIME:
        raise Unauthorized(f"token {name!r} is not a time in whole seconds", reason="claims")
    return value


def _canonical(part: str) -> bool:
    if len(part) % 4 == 1:  # no byte string encodes to this length
        return False
    last = _LAST_CHARACTERS[len(part) % 4]
    return last is None or part[-1] in last


def _entry_bytes(digest: bytes, principal: Principal) -> int:
    """What a cache entry holds, counted per entry (the scope sets are shared)."""
    return (
        _ENTRY_OVERHEAD
        + sys.getsizeof(digest)
        + sys.getsizeof(principal)
        + sys.getsizeof(principal.subject)
        + sys.getsizeof(principal.token_id)
        + sys.getsizeof(principal.key_id)
        + sys.getsizeof(principal.expires_at)
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
