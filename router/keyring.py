"""The router's signing keys: which key signs new tokens, which keys the JWKS publishes.

The keys live in `<state-dir>/keys` (gateway/auth/keys.py); `SigningKeys.rotate`
adds one and makes it active. The router notices by re-reading the directory
when its listing or the `active` file changes (`reload`, called every second by
the lifespan).

A rotation, step by step:

1. A new key appears: the JWKS publishes it at once, next to the old ones.
2. The old key keeps signing for `rotation_grace` seconds, long enough for
   every region's periodic JWKS refresh (60 s) to fetch the new key.
3. Then the new key signs. Tokens the old key signed stay valid until they
   expire: its public key stays published until its files are deleted.

A router that starts on a key it has never used signs with it at once; a
region meeting that kid first refreshes its JWKS early (gateway/auth/jwks.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.auth import SigningKeys, key_id, public_jwk

log = logging.getLogger("ghostgate.router")

KeysListener = Callable[[tuple[Ed25519PublicKey, ...]], None]


class KeyRing:
    """The signing keys of one state dir, reloaded when they change on disk."""

    def __init__(
        self,
        state_dir: Path,
        *,
        rotation_grace: float = 65.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state_dir = state_dir
        self._grace = rotation_grace
        self._clock = clock
        self._loaded: tuple[SigningKeys, Ed25519PrivateKey] | None = None
        self._pending: tuple[Ed25519PrivateKey, float] | None = None
        self._stamp: tuple[str, tuple[str, ...]] = ("", ())
        self._listeners: list[KeysListener] = []

    def load(self) -> KeyRing:
        """Read the state dir's signing keys, making the first one if there is
        none (the router's lifespan calls this; nothing is read before)."""
        keys = SigningKeys.load_or_create(self._state_dir)
        self._loaded = (keys, keys.active)
        self._stamp = self._read_stamp()
        self._notify()
        return self

    @property
    def _keys(self) -> SigningKeys:
        return self._state()[0]

    @property
    def _signer(self) -> Ed25519PrivateKey:
        return self._state()[1]

    def _state(self) -> tuple[SigningKeys, Ed25519PrivateKey]:
        if self._loaded is None:
            raise RuntimeError("KeyRing used before load()")
        return self._loaded

    def signer(self) -> Ed25519PrivateKey:
        """The key that signs a token now (the new one only once its grace has passed)."""
        if self._pending is not None and self._clock() >= self._pending[1]:
            self._loaded, self._pending = (self._keys, self._pending[0]), None
            log.info("new signing key in use", extra={"kid": self.signer_kid})
        return self._signer

    @property
    def signer_kid(self) -> str:
        return key_id(self._signer.public_key())

    @property
    def public_keys(self) -> tuple[Ed25519PublicKey, ...]:
        """Every key a token may be signed with: what the JWKS publishes."""
        keys = {key_id(k): k for k in self._keys.public_keys}
        keys.setdefault(self.signer_kid, self._signer.public_key())
        return tuple(keys.values())

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWKS document of `/.well-known/jwks.json`."""
        return {"keys": [public_jwk(key) for key in self.public_keys]}

    def on_change(self, listener: KeysListener) -> None:
        """Call `listener(public_keys)` on load and whenever the published keys change."""
        self._listeners.append(listener)
        if self._loaded is not None:
            listener(self.public_keys)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener(self.public_keys)

    def reload(self) -> bool:
        """Re-read the keys if the directory changed; True when it did."""
        try:
            stamp = self._read_stamp()
            if stamp == self._stamp:
                return False
            keys = SigningKeys.load_or_create(self._state_dir)
        except (OSError, ValueError) as exc:  # a rotation half written, a bad file
            log.warning("signing keys not reloaded, keeping the current ones: %s", exc)
            return False
        self._stamp, self._loaded = stamp, (keys, self._signer)
        if keys.active_kid != self.signer_kid:
            self._pending = (keys.active, self._clock() + self._grace)
            log.info(
                "signing key rotated",
                extra={"kid": keys.active_kid, "signs_in_seconds": self._grace},
            )
        self._notify()
        return True

    def _read_stamp(self) -> tuple[str, tuple[str, ...]]:
        directory = self._state_dir / "keys"
        active = (directory / "active").read_text().strip()
        return active, tuple(sorted(p.name for p in directory.glob("*.pub.pem")))

    def __repr__(self) -> str:
        if self._loaded is None:
            return "<KeyRing not loaded>"
        pending = key_id(self._pending[0].public_key()) if self._pending else None
        return (
            f"<KeyRing signer={self.signer_kid} pending={pending} "
            f"published={len(self.public_keys)}>"
        )
