"""Ghostgate's token format: EdDSA (Ed25519) JWTs, minted by the router, verified anywhere.

Claims: `iss`, `aud`="ghostgate", `sub`, `iat`, `nbf`, `exp`, `jti`, `scope`, and
`kid` in the header naming the signing key so keys can rotate. A verifier holds
public keys only, rejects every algorithm but EdDSA (no `none`, no HS* made with
the public key as a secret), any missing claim, a lifetime above the maximum, a
wrong audience or issuer, and revoked tokens. Verified tokens are cached until
they expire, so the hot path checks each token's signature once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypedDict

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import Unauthorized

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "scope")
DEFAULT_LIFETIME = 600.0

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
    scope: str
    token_id: str
    expires_at: float
    key_id: str


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
    scope: str = "completions",
    lifetime: float = DEFAULT_LIFETIME,
    now: float | None = None,
    token_id: str | None = None,
) -> tuple[str, Claims]:
    """Sign a token for `subject`; returns the compact JWT and its claims.

    `token_id` becomes the `jti`; tokens minted from an API key pass
    `"<key_id>.<nonce>"` so that revoking the key revokes them.
    """
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
        cache_size: int = 100_000,
        revocations: RevocationCheck | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        self.issuer = issuer
        self.audience = audience
        self.max_lifetime = max_lifetime
        self.leeway = leeway
        self.revocations: RevocationCheck = revocations or NoRevocations()
        self._clock = clock
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._cache_size = cache_size
        self.set_keys(public_keys)

    def set_keys(self, public_keys: Iterable[Ed25519PublicKey]) -> None:
        """Replace the trusted keys (rotation); cached tokens of dropped keys stop working."""
        self._keys = {key_id(key): key for key in public_keys}
        for token, principal in list(self._cache.items()):
            if principal.key_id not in self._keys:
                del self._cache[token]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def verify(self, token: str) -> Principal:
        """The principal of a good token; `Unauthorized` with a reason otherwise."""
        now = self._clock()
        principal = self._cache.get(token)
        if principal is None:
            principal = self._verify_signature(token, now)
            self._remember(token, principal)
        elif principal.expires_at + self.leeway < now:
            del self._cache[token]
            raise Unauthorized("token expired", reason="expired")
        if self.revocations.is_revoked(principal.token_id, principal.subject):
            raise Unauthorized("token revoked", reason="revoked")
        return principal

    def _remember(self, token: str, principal: Principal) -> None:
        self._cache[token] = principal
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

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
        iat, nbf, exp = payload.get("iat"), payload.get("nbf"), payload.get("exp")
        sub, scope, jti = payload.get("sub"), payload.get("scope"), payload.get("jti")
        times = (iat, nbf, exp)
        if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
            raise Unauthorized("token times malformed", reason="claims")
        assert isinstance(iat, int | float) and isinstance(nbf, int | float)
        assert isinstance(exp, int | float)
        if exp + self.leeway < now:
            raise Unauthorized("token expired", reason="expired")
        if nbf > now + self.leeway:
            raise Unauthorized("token not yet valid", reason="not_yet_valid")
        if not (isinstance(sub, str) and sub and isinstance(scope, str) and isinstance(jti, str)):
            raise Unauthorized("token claims malformed", reason="claims")
        if exp - iat > self.max_lifetime:
            raise Unauthorized("token lifetime above the maximum", reason="lifetime")
        if iat > now + self.leeway:
            raise Unauthorized("token issued in the future", reason="not_yet_valid")
        return Principal(subject=sub, scope=scope, token_id=jti, expires_at=float(exp), key_id=kid)


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer|token <t>` header, or `Unauthorized`."""
    if not authorization:
        raise Unauthorized("missing Authorization header", reason="missing")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() not in ("bearer", "token") or not value.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'", reason="malformed")
    return value.strip()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
