"""API keys become tokens: fresh on /v1/token, cached for forward mode, revocations honoured."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from gateway.auth.tokens import TokenVerifier
from gateway.errors import NoCapacity, Unauthorized
from gateway.store.base import KeyRecord, Revocations, StoreUnavailable, key_digest
from router.grants import Grant, TokenIssuer
from router.keyring import KeyRing
from router.settings import TokenSettings

SECRET = "gg_secret-of-alice"


class FakeStore:
    def __init__(self) -> None:
        self.records = {key_digest(SECRET): KeyRecord("k1", "alice", 0.0)}
        self.lookups = 0
        self.fail = False

    async def find_key(self, secret: str, *, touch: bool = True) -> KeyRecord | None:
        self.lookups += 1
        if self.fail:
            raise StoreUnavailable("down")
        return self.records.get(key_digest(secret))


class FakeRevocations:
    def __init__(self) -> None:
        self.snapshot = Revocations()

    def is_revoked(self, token_id: str, subject: str) -> bool:
        return self.snapshot.covers(token_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


Parts = tuple[TokenIssuer, FakeStore, FakeRevocations, Clock, KeyRing]


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    store, revocations, clock = FakeStore(), FakeRevocations(), Clock()
    keyring = KeyRing(tmp_path).load()
    issuer = TokenIssuer(store, keyring, revocations, TokenSettings(), clock=clock)
    return issuer, store, revocations, clock, keyring


@pytest.mark.anyio
async def test_issue_mints_a_token_naming_the_key(parts: Parts) -> None:
    issuer, store, _, clock, keyring = parts
    grant = await issuer.issue(SECRET)
    verifier = TokenVerifier(keyring.public_keys, clock=clock)
    principal = verifier.verify(grant.token)
    assert principal.subject == "alice" and principal.token_id.startswith("k1.")
    assert grant.expires_at == clock.now + 600 and grant.refresh_in(clock.now) == 300
    assert jwt.get_unverified_header(grant.token)["kid"] == keyring.signer_kid
    assert (await issuer.issue(SECRET)).token_id != grant.token_id  # a new jti every time
    assert store.lookups == 2  # /v1/token always reads the store


@pytest.mark.anyio
async def test_grants_are_cached_refreshed_and_rechecked(parts: Parts) -> None:
    issuer, store, _, clock, _ = parts
    first = await issuer.grant(SECRET)
    assert await issuer.grant(SECRET) == first and store.lookups == 1
    clock.now += 30
    assert (await issuer.grant(SECRET)).token == first.token
    clock.now += 31  # past `recheck` (60 s): the key is read again
    second = await issuer.grant(SECRET)
    assert store.lookups == 2 and second.token != first.token


@pytest.mark.anyio
async def test_refresh_before_expiry_without_a_store_read(tmp_path: Path) -> None:
    store, revocations, clock = FakeStore(), FakeRevocations(), Clock()
    settings = TokenSettings(recheck=10_000.0)
    issuer = TokenIssuer(store, KeyRing(tmp_path).load(), revocations, settings, clock=clock)
    first = await issuer.grant(SECRET)
    clock.now = first.expires_at - issuer.refresh_margin + 1
    renewed = await issuer.grant(SECRET)
    assert renewed.expires_at > first.expires_at and store.lookups == 1


@pytest.mark.anyio
async def test_revoked_unknown_and_malformed_keys(parts: Parts) -> None:
    issuer, store, revocations, _, _ = parts
    await issuer.grant(SECRET)
    revocations.snapshot = Revocations(keys=frozenset({"k1"}))
    with pytest.raises(Unauthorized, match="revoked"):
        await issuer.grant(SECRET)
    with pytest.raises(Unauthorized, match="unknown or revoked"):
        await issuer.issue("gg_someone-else")
    with pytest.raises(Unauthorized) as info:
        await issuer.grant("eyJ.not.a.key")
    assert info.value.reason == "malformed"
    store.fail = True
    with pytest.raises(NoCapacity):
        await issuer.issue(SECRET)


def test_refresh_in_leaves_time_for_copilots_minute() -> None:
    grant = Grant("k", "u", "t", "k.n", expires_at=1000.0, checked_at=0.0)
    assert grant.refresh_in(400.0) == 300
    assert grant.refresh_in(1000.0 - 1800) == 900
    assert grant.refresh_in(990.0) == 1
