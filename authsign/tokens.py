"""The native access object: an RFC 7519 JWT signed with Ed25519 (DESIGN.md section 3).

The web host that carries the token is assumed compromised, so the verifier believes nothing
the token says before its signature checks out under a key the caller vouches for (``keys``,
normally ``certs.trust.TrustStore.key_for``). The algorithm is pinned to EdDSA *before* a key
is looked up, which is what defeats ``alg: none`` and the HS256-with-the-public-key confusion.
Times are checked here rather than by PyJWT so that one explicit ``now`` and one leeway govern
exp, nbf and iat alike (and so NaN or infinite times, which Python's JSON accepts, are refused
instead of silently comparing false).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from authsign import pathclaim
from authsign.compat import Access
from pyis_common.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from jwt.types import Options

ALGORITHMS = ["EdDSA"]  # the only accepted "alg"; never derived from the token
REQUIRED = ["exp", "iat", "nbf", "pid", "uid", "allowedESAFs", "aud", "scope"]
MAX_TOKEN = 8192  # a token is a few hundred bytes; bound what we base64-decode and parse
MAX_LIFETIME_S = 3600  # tokens live minutes; a longer one was not made under our policy

# PyJWT's exception -> our sentence; subclasses before their bases (the first match wins)
_DECODE_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.InvalidSignatureError, "token signature is not valid"),
    (jwt.InvalidAlgorithmError, "token algorithm is not allowed"),
    (jwt.InvalidAudienceError, "token was issued for another audience"),
    (jwt.DecodeError, "token is malformed"),
    (jwt.PyJWTError, "token is not valid"),
)


def issue(
    key: Ed25519PrivateKey,
    kid: str,
    *,
    pid: str,
    uid: str,
    esafs: list[int],
    aud: str,
    scope: list[str] | str,
    lifetime_s: int = 600,
    now: float | None = None,
    paths: list[str] | None = None,
    jti: str | None = None,
) -> str:
    """The auth server's side: a signed token binding ``uid`` and ``esafs`` to session ``pid``;
    with ``paths``, to those prefixes inside the ESAF home only (authsign/pathclaim.py)."""
    if not kid:
        raise ValueError("a token needs a kid naming its signing key")
    if paths is not None and (why := pathclaim.problem(paths)) is not None:
        raise ValueError(why)
    if not 0 < lifetime_s <= MAX_LIFETIME_S:
        raise ValueError(f"lifetime_s must be in 1..{MAX_LIFETIME_S}")
    t = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iat": t,
        "nbf": t,
        "exp": t + lifetime_s,
        "pid": pid,
        "uid": uid,
        "allowedESAFs": sorted(set(esafs)),
        "aud": aud,
        "scope": scope if isinstance(scope, str) else " ".join(scope),
        "jti": jti or secrets.token_urlsafe(12),  # names this token in audit lines
    }
    if paths is not None:
        claims["paths"] = list(paths)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def verify(
    token: str,
    keys: Callable[[str], Ed25519PublicKey | None],
    *,
    pid: str,
    aud: str,
    job_type: str,
    leeway_s: float = 30.0,
    now: float | None = None,
) -> Access:
    """The grant ``token`` carries for a ``job_type`` request in session ``pid``.

    Raises Unauthorized (not a valid token for this session) or Forbidden (valid, but its
    scope excludes the job type); the message names the reason, never the token.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
        raise _refused("token is malformed")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _refused("token is malformed") from None
    if header.get("alg") not in ALGORITHMS:
        raise _refused("token algorithm is not allowed")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _refused("token names no signing key")
    key = keys(kid)
    if key is None:
        raise _refused("token signed by an unknown key")
    claims = _decode(token, key, aud)
    _check_times(claims, time.time() if now is None else now, leeway_s)
    return _grant(claims, pid, job_type, kid)


def _refused(reason: str) -> Unauthorized:
    return Unauthorized(reason)


def _decode(token: str, key: Ed25519PublicKey, aud: str) -> dict[str, Any]:
    """Signature, audience and claim presence, by PyJWT with the algorithm pinned."""
    options: Options = {
        "require": REQUIRED,
        "strict_aud": True,  # aud must be exactly our group, not a list that happens to hold it
        "verify_exp": False,  # times: _check_times, against one explicit now
        "verify_nbf": False,
        "verify_iat": False,
    }
    try:
        return jwt.decode(token, key, algorithms=ALGORITHMS, audience=aud, options=options)
    except jwt.MissingRequiredClaimError as exc:
        raise _refused(f"token lacks the {exc.claim!r} claim") from None
    except jwt.PyJWTError as exc:
        reason = next(text for cls, text in _DECODE_REASONS if isinstance(exc, cls))
        raise _refused(reason) from None


def _check_times(claims: dict[str, Any], now: float, leeway_s: float) -> None:
    """exp, nbf and iat against ``now``, each given ``leeway_s`` of clock skew."""
    for name in ("exp", "nbf", "iat"):
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _refused(f"token has a non-numeric {name}")
        if not math.isfinite(value):
            raise _refused(f"token has a non-finite {name}")
    if now > claims["exp"] + leeway_s:
        raise _refused("token has expired")
    if now + leeway_s < claims["nbf"]:
        raise _refused("token is not valid yet")
    if now + leeway_s < claims["iat"]:
        raise _refused("token was issued in the future")
    if claims["exp"] - min(claims["iat"], claims["nbf"]) > MAX_LIFETIME_S:
        raise _refused("token lifetime is too long")


def _grant(claims: dict[str, Any], pid: str, job_type: str, kid: str) -> Access:
    """Session binding, claim types, scope and paths; the Access the rest of procmgr uses."""
    if claims["pid"] != pid:
        raise _refused("token was issued for another session")
    user, esafs, scope = claims["uid"], claims["allowedESAFs"], claims["scope"]
    if not isinstance(user, str) or not user:
        raise _refused("token names no user")
    if not isinstance(esafs, list) or not all(
        isinstance(e, int) and not isinstance(e, bool) for e in esafs
    ):
        raise _refused("token has no valid allowedESAFs list")
    if not isinstance(scope, str):
        raise _refused("token has no valid scope")
    if "paths" in claims and (why := pathclaim.problem(claims["paths"])) is not None:
        raise _refused(f"token has a malformed paths claim ({why})")
    jti = claims.get("jti", "")
    if not isinstance(jti, str) or len(jti) > 128 or not jti.isprintable():
        raise _refused("token has a malformed jti claim")
    if job_type not in scope.split():
        raise Forbidden("token scope does not include this job type")
    paths = tuple(claims["paths"]) if "paths" in claims else None
    return Access(
        pid=pid,
        user=user,
        allowed_esafs=frozenset(esafs),
        expires=claims["exp"],
        paths=paths,
        kid=kid,
        jti=jti,
    )
