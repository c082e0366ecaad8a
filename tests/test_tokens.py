"""The native access object, in-process: every refusal names its reason.

The web host is the attacker here: it can hand us any token bytes it likes, so each test
crafts one hostile token (forged, re-keyed, unsigned, HMAC-confused, stale, stretched, moved
to another session) and checks the refusal's code and sentence, and that the sentence never
echoes the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authsign import tokens
from pyis_common import keyfiles
from pyis_common.errors import Refused

NOW = 1_700_000_000.0
PID, AUD, USER = "sess-1", "pyis-images", "alice"
KEY_A, KEY_B = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
KEYS = {"a": KEY_A.public_key(), "b": KEY_B.public_key()}


def _issue(key: Ed25519PrivateKey = KEY_A, kid: str = "a", **kw: Any) -> str:
    args: dict[str, Any] = dict(pid=PID, uid=USER, esafs=[7, 9], aud=AUD, scope="jpeg meta")
    return tokens.issue(key, kid, **(args | {"now": NOW} | kw))


def _verify(token: str, lookup: Any = KEYS.get, **kw: Any):
    args: dict[str, Any] = dict(pid=PID, aud=AUD, job_type="jpeg", now=NOW)
    return tokens.verify(token, lookup, **(args | kw))


def _refused(token: Any, code: str, words: str, **kw: Any) -> None:
    with pytest.raises(Refused) as info:
        _verify(token, **kw)
    assert info.value.code == code
    assert words in str(info.value)
    if isinstance(token, str) and token:
        assert token not in str(info.value)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**kw: Any) -> dict[str, Any]:
    base = {"iat": NOW, "nbf": NOW, "exp": NOW + 600, "pid": PID, "uid": USER}
    return base | {"allowedESAFs": [7], "aud": AUD, "scope": "jpeg"} | kw


def _signed(claims: dict[str, Any], key: Ed25519PrivateKey = KEY_A, kid: str = "a") -> str:
    """A correctly signed token with arbitrary claims (what a buggy issuer could produce)."""
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def _hs256(secret: bytes) -> str:
    """The key-confusion attack: HMAC keyed with the verifier's *public* key bytes."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "a"}).encode())
    body = _b64(json.dumps(_claims()).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


def test_good_token_grants_what_it_says():
    access = _verify(_issue())
    assert (access.pid, access.user, access.allowed_esafs) == (PID, USER, frozenset({7, 9}))
    assert access.expires == NOW + 600
    assert _verify(_issue(scope=["spots", "index"]), job_type="index").user == USER


def test_signature_by_another_key_is_refused():
    _refused(_issue(key=KEY_B, kid="a"), "unauthorized", "signature is not valid")


def test_swapped_kid_is_refused():
    head, body, sig = _issue(key=KEY_A, kid="a").split(".")
    swapped = _b64(json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": "b"}).encode())
    _refused(f"{swapped}.{body}.{sig}", "unauthorized", "signature is not valid")


def test_edited_claims_are_refused():
    head, _body, sig = _issue().split(".")
    richer = _b64(json.dumps(_claims(allowedESAFs=[1, 2, 3])).encode())
    _refused(f"{head}.{richer}.{sig}", "unauthorized", "signature is not valid")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(alg):
    head = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": "a"}).encode())
    body = _b64(json.dumps(_claims()).encode())
    _refused(f"{head}.{body}.", "unauthorized", "algorithm is not allowed")


@pytest.mark.parametrize("form", ["pem", "raw", "der"])
def test_hs256_keyed_with_the_public_key_is_refused(form):
    pub = KEY_A.public_key()
    secret = {
        "pem": keyfiles.public_pem(pub),
        "raw": pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "der": pub.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }[form]
    _refused(_hs256(secret), "unauthorized", "algorithm is not allowed")
    # and PyJWT's own pin holds even past our header check (defence in depth)
    with pytest.raises(Refused, match="algorithm is not allowed"):
        tokens._decode(_hs256(secret), pub, AUD)


def test_unknown_or_missing_kid_is_refused():
    _refused(_issue(kid="retired"), "unauthorized", "signed by an unknown key")
    head = _b64(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
    _refused(f"{head}.{_issue().split('.', 1)[1]}", "unauthorized", "names no signing key")


@pytest.mark.parametrize("token", ["", "garbage", "a.b", "a.b.c", "x" * 9000, None, b"a.b.c"])
def test_malformed_token_is_refused(token):
    _refused(token, "unauthorized", "token is malformed")


def test_expiry_with_leeway():
    token = _issue(lifetime_s=300)
    assert _verify(token, now=NOW + 300 + 29).user == USER  # clock skew within the leeway
    _refused(token, "unauthorized", "token has expired", now=NOW + 300 + 31)
    _refused(token, "unauthorized", "token has expired", now=NOW + 301, leeway_s=0)


def test_not_yet_valid_with_leeway():
    assert _verify(_issue(now=NOW + 20)).user == USER  # issuer's clock 20 s ahead: accepted
    _refused(_issue(now=NOW + 100), "unauthorized", "token is not valid yet")
    iat_ahead = _signed(_claims(iat=NOW + 100))
    _refused(iat_ahead, "unauthorized", "token was issued in the future")


def test_stretched_or_non_finite_times_are_refused():
    _refused(_signed(_claims(exp=NOW + 86400)), "unauthorized", "lifetime is too long")
    _refused(_signed(_claims(exp=float("nan"))), "unauthorized", "non-finite exp")
    _refused(_signed(_claims(exp="never")), "unauthorized", "non-numeric exp")
    with pytest.raises(ValueError):
        _issue(lifetime_s=86400)


def test_wrong_audience_is_refused():
    _refused(_issue(aud="other-host"), "unauthorized", "another audience")
    _refused(_signed(_claims(aud=[AUD, "x"])), "unauthorized", "another audience")


def test_token_for_another_session_is_refused():
    _refused(_issue(pid="sess-2"), "unauthorized", "issued for another session")


def test_job_type_outside_scope_is_forbidden():
    _refused(_issue(scope="meta"), "forbidden", "scope does not include this job type")
    _refused(_issue(scope="jpegs meta"), "forbidden", "scope")  # whole words, not prefixes


@pytest.mark.parametrize("claim", tokens.REQUIRED)
def test_missing_claim_is_refused(claim):
    claims = _claims()
    del claims[claim]
    _refused(_signed(claims), "unauthorized", f"lacks the {claim!r} claim")


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({"uid": ""}, "names no user"),
        ({"allowedESAFs": ["7"]}, "allowedESAFs"),
        ({"allowedESAFs": [True]}, "allowedESAFs"),
        ({"scope": ["jpeg"]}, "no valid scope"),
    ],
)
def test_badly_typed_claims_are_refused(claims, words):
    _refused(_signed(_claims(**claims)), "unauthorized", words)
