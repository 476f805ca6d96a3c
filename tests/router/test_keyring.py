"""Signing keys: published at once after a rotation, signing only after the grace."""

from __future__ import annotations

from pathlib import Path

from gateway.auth.keys import SigningKeys
from gateway.auth.tokens import TokenVerifier, key_id, mint
from router.keyring import KeyRing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rotation_publishes_first_and_signs_after_the_grace(tmp_path: Path) -> None:
    clock = Clock()
    ring = KeyRing(tmp_path, rotation_grace=65.0, clock=clock).load()
    old = ring.signer_kid
    verifier = TokenVerifier([])
    ring.on_change(verifier.set_keys)
    assert verifier.key_ids == (old,) and not ring.reload()
    new = SigningKeys.rotate(tmp_path).active_kid
    assert ring.reload()
    assert {k["kid"] for k in ring.jwks()["keys"]} == {old, new}
    assert set(verifier.key_ids) == {old, new}
    assert key_id(ring.signer().public_key()) == old  # regions may not know it yet
    clock.now += 65.0
    assert key_id(ring.signer().public_key()) == new
    token, _ = mint(ring.signer(), "alice")
    assert verifier.verify(token).subject == "alice"


def test_a_router_starting_on_a_key_signs_with_it_at_once(tmp_path: Path) -> None:
    SigningKeys.load_or_create(tmp_path)
    new = SigningKeys.rotate(tmp_path).active_kid
    ring = KeyRing(tmp_path, rotation_grace=65.0).load()
    assert ring.signer_kid == new and len(ring.public_keys) == 2


def test_a_broken_key_directory_keeps_the_current_keys(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path).load()
    before = ring.signer_kid
    (tmp_path / "keys" / "active").write_text("no-such-kid")
    assert not ring.reload()
    assert ring.signer_kid == before and len(ring.jwks()["keys"]) == 1
