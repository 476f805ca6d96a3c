"""The signing-key store in the state dir: Ed25519 keys as PEM files, mode 0600.

Layout, under `<state-dir>/keys/`:

    <kid>.pem        private key (PKCS#8), one per key ever made
    <kid>.pub.pem    its public key, what a region on another machine needs
    active           the kid that signs new tokens

Rotation adds a key and makes it active; older keys stay so that tokens they
signed keep verifying until the operator retires them.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from gateway.auth.tokens import key_id


def write_private(path: Path, data: bytes) -> None:
    """Write `data` atomically, readable by the owner only (keys, run.json)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """The keys of one state dir: the active signer and every public key."""

    directory: Path
    active: Ed25519PrivateKey
    public_keys: tuple[Ed25519PublicKey, ...]

    @property
    def active_kid(self) -> str:
        return key_id(self.active.public_key())

    @classmethod
    def load_or_create(cls, state_dir: Path) -> SigningKeys:
        """Open the state dir's keys, making the first one if there is none."""
        directory = state_dir / "keys"
        if not (directory / "active").exists():
            return cls.rotate(state_dir)
        return cls._load(directory)

    @classmethod
    def rotate(cls, state_dir: Path) -> SigningKeys:
        """Make a new key the active signer, keeping the old ones for verification."""
        directory = state_dir / "keys"
        key = Ed25519PrivateKey.generate()
        kid = key_id(key.public_key())
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        write_private(directory / f"{kid}.pem", pem)
        public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        write_private(directory / f"{kid}.pub.pem", public)
        write_private(directory / "active", kid.encode())
        return cls._load(directory)

    @classmethod
    def _load(cls, directory: Path) -> SigningKeys:
        kid = (directory / "active").read_text().strip()
        active = _private_key(directory / f"{kid}.pem")
        publics = load_public_keys(sorted(directory.glob("*.pub.pem")))
        return cls(directory=directory, active=active, public_keys=publics)


def load_public_keys(paths: list[Path] | tuple[Path, ...]) -> tuple[Ed25519PublicKey, ...]:
    """Ed25519 public keys from PEM files (public or private PEM, for convenience)."""
    keys: list[Ed25519PublicKey] = []
    for path in paths:
        data = path.read_bytes()
        if b"PRIVATE KEY" in data:
            keys.append(_private_key(path).public_key())
            continue
        key = load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} is not an Ed25519 public key")
        keys.append(key)
    return tuple(keys)


def _private_key(path: Path) -> Ed25519PrivateKey:
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key
