"""Every forged, expired, over-long or misaddressed token is refused."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.auth.keys import SigningKeys, load_public_keys
from gateway.auth.tokens import TokenVerifier, bearer_token, key_id, mint, public_jwk
from gateway.errors import Unauthorized

NOW = 1_800_000_000.0


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def verifier(key: Ed25519PrivateKey, **kw: object) -> TokenVerifier:
    return TokenVerifier([key.public_key()], clock=lambda: NOW, **kw)  # type: ignore[arg-type]


def reason(v: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as info:
        v.verify(token)
    return info.value.reason


def test_good_token_verifies_and_is_cached(key: Ed25519PrivateKey) -> None:
    v = verifier(key)
    token, claims = mint(key, "alice", now=NOW)
    principal = v.verify(token)
    assert principal.subject == "alice" and principal.token_id == claims["jti"]
    assert claims["exp"] - claims["iat"] == 600
    assert v.verify(token) is principal  # served from the cache


def test_cached_token_still_expires(key: Ed25519PrivateKey) -> None:
    clock = [NOW]
    v = TokenVerifier([key.public_key()], clock=lambda: clock[0])
    token, _ = mint(key, "alice", now=NOW)
    v.verify(token)
    clock[0] = NOW + 600 + 31
    with pytest.raises(Unauthorized):
        v.verify(token)


def test_expired_beyond_leeway(key: Ed25519PrivateKey) -> None:
    token, _ = mint(key, "alice", now=NOW - 700)
    assert reason(verifier(key), token) == "expired"
    within_leeway, _ = mint(key, "alice", now=NOW - 620)
    assert verifier(key).verify(within_leeway).subject == "alice"


def test_lifetime_over_maximum(key: Ed25519PrivateKey) -> None:
    token, _ = mint(key, "alice", now=NOW, lifetime=3600)
    assert reason(verifier(key), token) == "lifetime"


def test_wrong_audience_and_issuer(key: Ed25519PrivateKey) -> None:
    assert reason(verifier(key), mint(key, "a", now=NOW, audience="other")[0]) == "claims"
    assert reason(verifier(key), mint(key, "a", now=NOW, issuer="evil")[0]) == "claims"


def test_missing_claim(key: Ed25519PrivateKey) -> None:
    payload = {
        "iss": "ghostgate",
        "aud": "ghostgate",
        "sub": "a",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 60,
        "jti": "x",
    }  # no scope
    token = jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": key_id(key.public_key())})
    assert reason(verifier(key), token) == "claims"


def test_foreign_key(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    token, _ = mint(other, "alice", now=NOW)
    assert reason(verifier(key), token) == "unknown_key"
    # Same kid as ours, signed by another key: the signature check catches it.
    forged = jwt.encode(
        jwt.decode(token, options={"verify_signature": False}),
        other,
        algorithm="EdDSA",
        headers={"kid": key_id(key.public_key())},
    )
    assert reason(verifier(key), forged) == "invalid"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_alg_none(key: Ed25519PrivateKey) -> None:
    _, claims = mint(key, "alice", now=NOW)
    header = {"alg": "none", "typ": "JWT", "kid": key_id(key.public_key())}
    token = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
    # An unsecured JWS (empty signature) is not even a well-formed token here;
    # given some signature, the algorithm check still refuses it.
    assert reason(verifier(key), token) == "malformed"
    assert reason(verifier(key), token + _b64(b"x" * 64)) == "algorithm"


def test_hs256_signed_with_the_public_key(key: Ed25519PrivateKey) -> None:
    _, claims = mint(key, "alice", now=NOW)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    header = {"alg": "HS256", "typ": "JWT", "kid": key_id(key.public_key())}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    import hashlib
    import hmac

    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    assert reason(verifier(key), f"{signing_input}.{_b64(signature)}") == "algorithm"


def test_tampered_payload(key: Ed25519PrivateKey) -> None:
    token, claims = mint(key, "alice", now=NOW)
    head, _, sig = token.split(".")
    claims["sub"] = "mallory"
    assert reason(verifier(key), f"{head}.{_b64(json.dumps(claims).encode())}.{sig}") == "invalid"


def test_garbage_and_future_tokens(key: Ed25519PrivateKey) -> None:
    assert reason(verifier(key), "not-a-jwt") == "malformed"
    future, _ = mint(key, "alice", now=NOW + 3600)
    assert reason(verifier(key), future) == "not_yet_valid"


def test_revocation_applies_even_to_cached_tokens(key: Ed25519PrivateKey) -> None:
    revoked: set[str] = set()

    class Revocations:
        def is_revoked(self, token_id: str, subject: str) -> bool:
            return subject in revoked

    v = verifier(key, revocations=Revocations())
    token, _ = mint(key, "alice", now=NOW)
    v.verify(token)
    revoked.add("alice")
    assert reason(v, token) == "revoked"


def test_rotation_keeps_old_tokens_until_key_dropped(tmp_path: Path) -> None:
    first = SigningKeys.load_or_create(tmp_path)
    old_token, _ = mint(first.active, "alice")
    second = SigningKeys.rotate(tmp_path)
    assert second.active_kid != first.active_kid and len(second.public_keys) == 2
    v = TokenVerifier(second.public_keys)
    assert v.verify(old_token).subject == "alice"
    assert v.verify(mint(second.active, "bob")[0]).subject == "bob"
    v.set_keys([second.active.public_key()])
    with pytest.raises(Unauthorized):
        v.verify(old_token)


def test_key_files_are_private(tmp_path: Path) -> None:
    keys = SigningKeys.load_or_create(tmp_path)
    for path in (tmp_path / "keys").iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
    assert SigningKeys.load_or_create(tmp_path).active_kid == keys.active_kid
    publics = load_public_keys(sorted((tmp_path / "keys").glob("*.pub.pem")))
    assert [key_id(k) for k in publics] == [keys.active_kid]
    assert public_jwk(publics[0])["kid"] == keys.active_kid


def test_bearer_header_forms() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("token abc") == "abc"
    for bad in (None, "", "Basic abc", "Bearer ", "abc"):
        with pytest.raises(Unauthorized):
            bearer_token(bad)


def test_real_clock_default(key: Ed25519PrivateKey) -> None:
    token, _ = mint(key, "alice")
    assert TokenVerifier([key.public_key()]).verify(token).expires_at > time.time()
