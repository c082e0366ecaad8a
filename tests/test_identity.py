"""Who may be served at all: portable user names, UIDs from min_uid, compat objects that age."""

from __future__ import annotations

import json
import pwd
import secrets
import subprocess
import time

import pytest

from authsign import compat
from pyis_common.errors import Unauthorized
from tests.support.client import ask, error_code

MAX_AGE_S = 86400  # compat_max_age_s's default, which the shared site runs with


def job(site, pid: str) -> dict:
    return {"type": "jpeg", "pid": pid, "esaf": site.esaf, "fn": "thau_0001.cbf", "xsize": 64}


def signed(site, obj: dict) -> str:
    """Store an isAuth of exactly ``obj``, signed by the site's auth key."""
    pid = obj["pid"]
    isauth = json.dumps(obj, sort_keys=True).encode()
    site.stack.redis.hset(
        pid, mapping={"isAuth": isauth, "isAuthSig": compat.sign(site.stack.key, isauth)}
    )
    return pid


@pytest.mark.parametrize(
    "user", ["bad\x00name", "../../etc/passwd", "-rf", "x" * 33, "caf\u00e9", "a b", "root\n"]
)
def test_a_user_name_that_is_not_portable_is_forbidden(site, user):
    reply = ask(site.endpoint, job(site, site.session(user=user)))
    assert error_code(reply) == "forbidden", reply
    assert b"portable" in reply[0]
    assert ask(site.endpoint, job(site, site.session()))[0] == b""


def test_a_system_account_below_min_uid_is_forbidden(site):
    name = f"pyiss{site.accounts.tag}"
    subprocess.run(
        ["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", "-g", f"e{site.esaf}", name],
        check=True,
        capture_output=True,
    )
    site.accounts.users.append(name)  # removed with the site's other accounts
    uid = pwd.getpwnam(name).pw_uid
    assert 0 < uid < 1000
    reply = ask(site.endpoint, job(site, site.session(user=name)))
    assert error_code(reply) == "forbidden"
    assert f"UID {uid} (min_uid 1000)" in reply[0].decode()


def test_a_user_this_host_does_not_know_is_forbidden(site):
    stranger = f"pyisx{site.accounts.tag}"  # portable, and no such account
    with pytest.raises(KeyError):
        pwd.getpwnam(stranger)
    reply = ask(site.endpoint, job(site, site.session(user=stranger)))
    assert error_code(reply) == "forbidden"
    assert f"user {stranger!r} is not known on this image host" in reply[0].decode()
    assert ask(site.endpoint, job(site, site.session()))[0] == b""  # the rest is still served


def test_an_esaf_whose_group_this_host_does_not_know_is_forbidden(site):
    esaf = site.other_esaf + 1  # no group e<esaf> was made
    pid = site.session(esafs=[esaf])
    reply = ask(site.endpoint, {**job(site, pid), "esaf": esaf})
    assert error_code(reply) == "forbidden"
    assert f"ESAF group 'e{esaf}' is not known on this image host" in reply[0].decode()


def test_an_esaf_group_without_a_home_account_is_forbidden(site):
    esaf = site.other_esaf + 2
    site.accounts.group(f"e{esaf}")  # the group, but no passwd account naming its home
    pid = site.session(esafs=[esaf])
    reply = ask(site.endpoint, {**job(site, pid), "esaf": esaf})
    assert error_code(reply) == "forbidden"
    assert f"ESAF {esaf} has no home directory on this image host" in reply[0].decode()


def test_the_throwaway_users_are_at_or_above_min_uid(site):
    assert pwd.getpwnam(site.user).pw_uid >= 1000  # so the privilege tests stay real


def test_compat_object_without_exp_or_iat_is_refused(site):
    pid = signed(site, {"pid": secrets.token_hex(8), "uid": site.user, "allowedESAFs": [site.esaf]})
    reply = ask(site.endpoint, job(site, pid))
    assert error_code(reply) == "unauthorized" and b"neither exp nor iat" in reply[0]


def test_compat_object_without_exp_ages_out_after_compat_max_age(site):
    now = int(time.time())
    base = {"uid": site.user, "allowedESAFs": [site.esaf]}
    fresh = signed(site, {"pid": secrets.token_hex(8), "iat": now - 60, **base})
    assert ask(site.endpoint, job(site, fresh))[0] == b""
    old = signed(site, {"pid": secrets.token_hex(8), "iat": now - MAX_AGE_S - 3600, **base})
    reply = ask(site.endpoint, job(site, old))
    assert error_code(reply) == "unauthorized" and b"expired" in reply[0]


def test_compat_max_age_zero_keeps_the_c_servers_forever():
    key = compat.generate_key()
    isauth = json.dumps({"pid": "s", "uid": "alice", "allowedESAFs": [1]}).encode()
    access = compat.verify(key.public_key(), isauth, compat.sign(key, isauth), "s", max_age_s=0)
    assert access.expires is None
    with pytest.raises(Unauthorized, match="neither exp nor iat"):
        compat.verify(key.public_key(), isauth, compat.sign(key, isauth), "s", max_age_s=60)


def test_a_resolved_identity_is_reused_for_its_hold_and_a_refusal_never(monkeypatch):
    """The loop resolves (user, ESAF) per request from a short memo: NSS is asked again after
    identity.HOLD_S, after a reload, and after every refusal."""
    from procmgr import identity
    from pyis_common.config import ProcmgrConfig
    from pyis_common.errors import Forbidden

    now, asked = [100.0], []
    monkeypatch.setattr(identity.time, "monotonic", lambda: now[0])

    def resolve(cfg, user, esaf):
        asked.append((user, esaf))
        if user == "nobody-here":
            raise Forbidden("user 'nobody-here' is not known on this image host")
        return identity.Identity(user, 1000, 1000, "/home/x", esaf)

    monkeypatch.setattr(identity, "resolve", resolve)
    held, cfg = identity.Identities(), ProcmgrConfig()
    assert held.resolve(cfg, "alice", 7) == held.resolve(cfg, "alice", 7)
    assert asked == [("alice", 7)]
    for _ in range(2):
        with pytest.raises(Forbidden):
            held.resolve(cfg, "nobody-here", 7)
    assert asked.count(("nobody-here", 7)) == 2
    now[0] += identity.HOLD_S
    held.resolve(cfg, "alice", 7)
    held.clear()
    held.resolve(cfg, "alice", 7)
    assert asked.count(("alice", 7)) == 3
