"""One refusal model: the access code raises error classes, and the session-state rule is one.

The procmgr used to translate ``AccessError("forbidden", ...)`` back into a class by comparing
strings, and ``is-authsign verify`` kept its own copy of the revoked/missing rule.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authsign import compat, sessioncheck, tokens
from procmgr.access import AccessChecker
from procmgr.sessions import Session
from pyis_common.config import ProcmgrConfig
from pyis_common.errors import Forbidden, PyisError, Refused, Unauthorized
from pyis_common.request import parse

KEY = Ed25519PrivateKey.generate()
PID, AUD = "sess-r", "pyis-images"


def _token(scope: str) -> str:
    return tokens.issue(KEY, "k1", pid=PID, uid="alice", esafs=[7], aud=AUD, scope=scope)


def _verify(token: str, job_type: str) -> compat.Access:
    lookup = {"k1": KEY.public_key()}.get
    return tokens.verify(token, lookup, pid=PID, aud=AUD, job_type=job_type)


def test_a_token_outside_its_scope_is_forbidden_and_a_forged_one_unauthorized():
    token = _token("meta")
    assert _verify(token, "meta").user == "alice"
    with pytest.raises(Forbidden) as scope:
        _verify(token, "jpeg")
    with pytest.raises(Unauthorized) as forged:
        _verify(token[:-4] + "AAAA", "meta")
    for exc in (scope.value, forged.value):
        assert isinstance(exc, Refused) and isinstance(exc, PyisError)
    assert (scope.value.code, forged.value.code) == ("forbidden", "unauthorized")


def test_the_compatible_form_refuses_with_the_same_class():
    key = compat.generate_key()
    isauth = compat.make_isauth(PID, "alice", [7])
    with pytest.raises(Unauthorized, match="another session"):
        compat.verify(key.public_key(), isauth, compat.sign(key, isauth), "other-session")


@pytest.mark.parametrize(
    "exists,revoked,words",
    [(True, b"1", "revoked"), (False, None, "no access object"), (False, b"1", "revoked")],
)
def test_the_procmgr_and_is_authsign_verify_apply_one_session_rule(exists, revoked, words):
    with pytest.raises(Unauthorized, match=words) as by_tool:
        sessioncheck.require_live(exists, revoked)
    checker = AccessChecker(ProcmgrConfig(compat_enabled=False))  # the rule comes first
    req = parse({"pid": PID, "type": "meta", "fn": "a.cbf", "auth": _token("meta")})
    with pytest.raises(Unauthorized) as by_procmgr:
        checker.check(req, Session(exists, (None, None, None, revoked)))
    assert str(by_procmgr.value) == str(by_tool.value)
