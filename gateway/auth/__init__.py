"""Tokens and keys: EdDSA JWTs minted by the router and verified by every region.

tokens  the token format, minting, scopes (`allows`, `require_scope`), and
        `TokenVerifier` (strict format, byte-bounded cache, revocation-aware)
jwks    regions trusting the router's JWKS, refreshed (`JwksRefresher`)
keys    signing keys on disk (`SigningKeys`), public keys from PEM files
"""

from __future__ import annotations

from gateway.auth.jwks import JwksError, JwksRefresher, JwksVerifier, parse_jwks
from gateway.auth.keys import SigningKeys, load_public_keys, write_private
from gateway.auth.tokens import (
    ALGORITHM,
    DEFAULT_LIFETIME,
    DEFAULT_SCOPE,
    KNOWN_SCOPES,
    CacheUsage,
    Claims,
    NoRevocations,
    Principal,
    RevocationCheck,
    TokenVerifier,
    allows,
    bearer_token,
    check_format,
    key_id,
    mint,
    parse_scopes,
    public_jwk,
    require_scope,
)

__all__ = [
    "ALGORITHM",
    "DEFAULT_LIFETIME",
    "DEFAULT_SCOPE",
    "KNOWN_SCOPES",
    "CacheUsage",
    "Claims",
    "JwksError",
    "JwksRefresher",
    "JwksVerifier",
    "NoRevocations",
    "Principal",
    "RevocationCheck",
    "SigningKeys",
    "TokenVerifier",
    "allows",
    "bearer_token",
    "check_format",
    "key_id",
    "load_public_keys",
    "mint",
    "parse_jwks",
    "parse_scopes",
    "public_jwk",
    "require_scope",
    "write_private",
]
