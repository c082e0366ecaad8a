"""The C server's compatible access object: ``isAuth`` JSON + ``isAuthSig``.

``isAuthSig`` is base64 (one line) of an RSA-2048 PKCS#1 v1.5 SHA-256 signature over the exact
``isAuth`` bytes, as the LS-CAT auth ("contrabass") server writes it. We verify the bytes as
stored, never a re-serialisation, so whitespace or key order cannot be used to smuggle fields.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pyis_common.errors import Unauthorized

MIN_RSA_BITS = 2048
MAX_ISAUTH = 16384  # an access object is a few hundred bytes


@dataclass(frozen=True)
class Access:
    """What a verified access object grants."""

    pid: str
    user: str
    allowed_esafs: frozenset[int]
    expires: float | None  # epoch seconds, or None when the object carries no exp
    paths: tuple[str, ...] | None = None  # a JWT's path prefixes inside the ESAF home
    kid: str = ""  # the signing key and token id, for the audit lines of refusals
    jti: str = ""


def generate_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise ValueError(f"the isAuth key must be an RSA key of at least {MIN_RSA_BITS} bits")
    return key


def make_isauth(pid: str, user: str, esafs: list[int], lifetime_s: int | None = None) -> bytes:
    """The auth server's side: the JSON bytes it stores as ``isAuth``."""
    obj: dict[str, Any] = {"pid": pid, "uid": user, "allowedESAFs": sorted(esafs)}
    if lifetime_s is not None:
        now = int(time.time())
        obj |= {"iat": now, "exp": now + lifetime_s}
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sign(key: rsa.RSAPrivateKey, isauth: bytes) -> bytes:
    """``isAuthSig`` for ``isauth``: base64 without newlines."""
    sig = key.sign(isauth, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig)


def verify(
    key: rsa.RSAPublicKey,
    isauth: bytes | None,
    isauth_sig: bytes | None,
    pid: str,
    *,
    now: float | None = None,
    leeway_s: float = 30.0,
    max_age_s: float = 0.0,
) -> Access:
    """Check signature, pid binding and times; return the grant or raise Unauthorized.

    ``max_age_s`` > 0: an object without ``exp`` is valid that long after its ``iat`` (and
    refused without one); 0 leaves it valid forever, as the C server did."""
    if not isauth or not isauth_sig:
        raise Unauthorized("no access object for this session")
    if len(isauth) > MAX_ISAUTH:
        raise Unauthorized("access object is too large")
    try:
        sig = base64.b64decode(isauth_sig, validate=True)
        key.verify(sig, isauth, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        raise Unauthorized("access object signature is not valid") from None
    try:
        obj = json.loads(isauth)
    except ValueError:
        raise Unauthorized("access object is not JSON") from None
    if not isinstance(obj, dict):
        raise Unauthorized("access object is not a JSON object")
    return _grant(obj, pid, time.time() if now is None else now, leeway_s, max_age_s)


def _grant(obj: dict[str, Any], pid: str, now: float, leeway_s: float, max_age_s: float) -> Access:
    if obj.get("pid") != pid:
        raise Unauthorized("access object was issued for another session")
    user, esafs = obj.get("uid"), obj.get("allowedESAFs")
    if not isinstance(user, str) or not user:
        raise Unauthorized("access object names no user")
    if not isinstance(esafs, list) or not all(
        isinstance(e, int) and not isinstance(e, bool) for e in esafs
    ):
        raise Unauthorized("access object has no valid allowedESAFs list")
    exp, iat, nbf = obj.get("exp"), obj.get("iat"), obj.get("nbf", obj.get("iat"))
    for name, value in (("exp", exp), ("iat", iat), ("nbf", nbf)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise Unauthorized(f"access object has a non-numeric {name}")
    if exp is None and max_age_s > 0:
        if iat is None:
            raise Unauthorized("access object has neither exp nor iat")
        exp = iat + max_age_s  # then it expires like any other, memo included
    if exp is not None and now > exp + leeway_s:
        raise Unauthorized("access object has expired")
    if nbf is not None and now + leeway_s < nbf:
        raise Unauthorized("access object is not valid yet")
    return Access(pid=pid, user=user, allowed_esafs=frozenset(esafs), expires=exp)
