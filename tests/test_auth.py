"""The compatible access object: signed isAuth in the web host's Redis, checked every request."""

from __future__ import annotations

import json

from authsign import compat
from tests.support.client import ask, error_code

GOOD = {"type": "jpeg", "fn": "thau_0001.cbf", "xsize": 64}


def _job(site, pid, esaf=None):
    return {"pid": pid, "esaf": site.esaf if esaf is None else esaf, **GOOD}


def _assert_refused_then_good_works(site, reply, code, words):
    assert error_code(reply) == code
    assert words in reply[0].decode()
    good = ask(site.endpoint, _job(site, site.session()))
    assert good[0] == b""


def test_missing_hash_is_unauthorized(site):
    reply = ask(site.endpoint, _job(site, "no-such-session"))
    _assert_refused_then_good_works(site, reply, "unauthorized", "no access object")


def test_bad_signature_is_unauthorized(site):
    pid = site.session()
    isauth = site.stack.redis.hget(pid, "isAuth")
    forged = isauth.replace(b'"allowedESAFs":[', b'"allowedESAFs":[1,')
    site.stack.redis.hset(pid, "isAuth", forged)
    reply = ask(site.endpoint, _job(site, pid))
    _assert_refused_then_good_works(site, reply, "unauthorized", "signature")


def test_signature_by_another_key_is_unauthorized(site):
    pid = "other-key-session"
    isauth = compat.make_isauth(pid, site.user, [site.esaf], 600)
    site.stack.redis.hset(
        pid, mapping={"isAuth": isauth, "isAuthSig": compat.sign(compat.generate_key(), isauth)}
    )
    reply = ask(site.endpoint, _job(site, pid))
    _assert_refused_then_good_works(site, reply, "unauthorized", "signature")


def test_pid_mismatch_is_unauthorized(site):
    pid = site.session()
    # a valid object copied under another session id: a replay of someone else's session
    site.stack.redis.hset("stolen-session", mapping=site.stack.redis.hgetall(pid))
    reply = ask(site.endpoint, _job(site, "stolen-session"))
    _assert_refused_then_good_works(site, reply, "unauthorized", "another session")


def test_esaf_not_allowed_is_forbidden(site):
    pid = site.session(esafs=[site.esaf])
    reply = ask(site.endpoint, _job(site, pid, esaf=site.other_esaf))
    _assert_refused_then_good_works(site, reply, "forbidden", f"ESAF {site.other_esaf}")


def test_expired_object_is_unauthorized(site):
    pid = "expired-session"
    obj = {"pid": pid, "uid": site.user, "allowedESAFs": [site.esaf], "iat": 1000, "exp": 2000}
    isauth = json.dumps(obj).encode()
    site.stack.redis.hset(
        pid, mapping={"isAuth": isauth, "isAuthSig": compat.sign(site.stack.key, isauth)}
    )
    reply = ask(site.endpoint, _job(site, pid))
    _assert_refused_then_good_works(site, reply, "unauthorized", "expired")


def test_deleted_session_stops_working_at_the_next_request(site):
    pid = site.session()
    assert ask(site.endpoint, _job(site, pid))[0] == b""
    site.stack.redis.delete(pid)
    assert error_code(ask(site.endpoint, _job(site, pid))) == "unauthorized"


def test_pid_naming_a_non_hash_key_is_unauthorized(site):
    site.stack.redis.set("a-string-key", "x")
    reply = ask(site.endpoint, _job(site, "a-string-key"))
    _assert_refused_then_good_works(site, reply, "unauthorized", "no access object")


def test_refusals_are_logged_without_the_session_id(site):
    ask(site.endpoint, _job(site, "logged-refusal-session"))
    text = site.log_text()
    assert "outcome=unauthorized" in text and "client=" in text
    assert "logged-refusal-session" not in text
