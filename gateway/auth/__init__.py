"""Tokens and keys: EdDSA JWTs minted by the router and verified by every region.

tokens  the token format, minting, and `TokenVerifier` (cached, revocation-aware)
jwks    regions trusting the router's JWKS, refreshed (`JwksRefresher`)
keys    signing keys on disk (`SigningKeys`), public keys from PEM files
"""

from __future__ import annotations

from gateway.auth.jwks import JwksError, JwksRefresher, JwksVerifier, parse_jwks
from gateway.auth.keys import SigningKeys, load_public_keys, write_private
from gateway.auth.tokens import (
    ALGORITHM,
    DEFAULT_LIFETIME,
    Claims,
    NoRevocations,
    Principal,
    RevocationCheck,
    TokenVerifier,
    bearer_token,
    key_id,
    mint,
    public_jwk,
)

__all__ = [
    "ALGORITHM",
    "DEFAULT_LIFETIME",
    "Claims",
    "JwksError",
    "JwksRefresher",
    "JwksVerifier",
    "NoRevocations",
    "Principal",
    "RevocationCheck",
    "SigningKeys",
    "TokenVerifier",
    "bearer_token",
    "key_id",
    "load_public_keys",
    "mint",
    "parse_jwks",
    "public_jwk",
    "write_private",
]
