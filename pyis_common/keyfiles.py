"""Ed25519 key files for the native access object.

A private key is written with ``O_CREAT | O_EXCL`` and mode 0600 in one step, so it is never
readable by others, not even for the moment between create and chmod, and an existing key is
never silently overwritten (a lost signing key is a rotation, not an accident).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PRIVATE_MODE = 0o600


def write_private(path: Path, data: bytes) -> Path:
    """Create ``path`` 0600 with ``data``; refuse to replace an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def save_private(key: Ed25519PrivateKey, path: Path) -> Path:
    """Write ``key`` as unencrypted PKCS#8 PEM (the file mode is the protection)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return write_private(path, pem)


def load_private(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path``; anything else is a configuration error."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in ``path`` (SubjectPublicKeyInfo PEM)."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} does not hold an Ed25519 public key")
    return key
