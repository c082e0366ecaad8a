"""JWT access objects through the real stack: the trust chain, the policy, rotation, revocation."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import time

import pytest

from authsign import tokens
from certs import ca
from procmgr.__main__ import dev_user
from pyis_common import keyfiles
from pyisdev import procs
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack

FN = "thau_0001.cbf"


def _job(site, pid, token, esaf=None, **extra):
    esaf = site.esaf if esaf is None else esaf
    return {"type": "jpeg", "pid": pid, "esaf": esaf, "fn": FN, "xsize": 64, "auth": token, **extra}


def test_inline_token_is_served_and_not_echoed(site):
    pid, token = site.stack.token(site.user, [site.esaf])
    reply = ask(site.endpoint, _job(site, pid, token))
    assert reply[0] == b"" and len(reply) == 4
    assert token.encode() not in reply[1] and b'"auth"' not in reply[1]


def test_token_in_the_session_hash_is_served(site):
    pid, _ = site.stack.token(site.user, [site.esaf], in_hash=True)
    reply = ask(
        site.endpoint, {"type": "jpeg", "pid": pid, "esaf": site.esaf, "fn": FN, "xsize": 64}
    )
    assert reply[0] == b""


def test_token_for_esaf_a_cannot_read_esaf_b(site):
    pid, token = site.stack.token(site.user, [site.esaf])
    reply = ask(site.endpoint, _job(site, pid, token, esaf=site.other_esaf))
    assert error_code(reply) == "forbidden"


def test_job_type_outside_scope_is_forbidden(site):
    pid, token = site.stack.token(site.user, [site.esaf], scope="meta")
    reply = ask(site.endpoint, _job(site, pid, token))
    assert error_code(reply) == "forbidden" and "scope" in reply[0].decode()
    meta = ask(site.endpoint, _job(site, pid, token, type="meta"))
    assert meta[0] == b""


def test_expired_token_is_unauthorized(site):
    pid = "jwt-expired"
    token = tokens.issue(
        site.stack.signing_key,
        site.stack.kid,
        pid=pid,
        uid=site.user,
        esafs=[site.esaf],
        aud="pyis",
        scope="jpeg",
        lifetime_s=60,
        now=time.time() - 3600,
    )
    site.stack.redis.hset(pid, "session", "1")
    reply = ask(site.endpoint, _job(site, pid, token))
    assert error_code(reply) == "unauthorized" and "expired" in reply[0].decode()


def test_alg_none_token_is_unauthorized(site):
    pid, good = site.stack.token(site.user, [site.esaf])
    claims = good.split(".")[1]
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "dev-1"}).encode())
    forged = header.rstrip(b"=").decode() + "." + claims + "."
    reply = ask(site.endpoint, _job(site, pid, forged))
    assert error_code(reply) == "unauthorized" and "algorithm" in reply[0].decode()


def test_token_of_another_session_is_unauthorized(site):
    _, token = site.stack.token(site.user, [site.esaf])
    other_pid, _ = site.stack.token(site.user, [site.esaf])
    reply = ask(site.endpoint, _job(site, other_pid, token))
    assert error_code(reply) == "unauthorized" and "another session" in reply[0].decode()


def test_logout_and_revocation_end_the_session_at_the_next_request(site):
    pid, token = site.stack.token(site.user, [site.esaf])
    assert ask(site.endpoint, _job(site, pid, token))[0] == b""
    site.stack.redis.hset(pid, "revoked", "1")
    assert "revoked" in ask(site.endpoint, _job(site, pid, token))[0].decode()
    site.stack.redis.delete(pid)
    assert error_code(ask(site.endpoint, _job(site, pid, token))) == "unauthorized"


def test_key_certified_by_another_root_is_refused(site, tmp_path):
    ca.init_root(tmp_path / "rogue-ca", name="pyis offline CA")
    key_path, cert_path = ca.issue_signing(tmp_path / "rogue-ca", "rogue-1", tmp_path / "out")
    shutil.copy(cert_path, site.stack.signing_dir / "rogue-1.pem")
    try:
        pid, _ = site.stack.token(site.user, [site.esaf])
        token = tokens.issue(
            keyfiles.load_private(key_path),
            "rogue-1",
            pid=pid,
            uid=site.user,
            esafs=[site.esaf],
            aud="pyis",
            scope="jpeg",
        )
        reply = ask(site.endpoint, _job(site, pid, token))
        assert error_code(reply) == "unauthorized" and "unknown key" in reply[0].decode()
    finally:
        (site.stack.signing_dir / "rogue-1.pem").unlink()


@pytest.fixture
def own_stack(testdata):
    with dev_stack(testdata, name=FN) as stack:
        yield stack


def test_key_rotation_and_revocation_without_restart(own_stack):
    dev_stack = own_stack
    from procmgr.__main__ import dev_user

    user = dev_user()
    procmgr_pid = dev_stack.procmgr.pid
    old_pid, old_token = dev_stack.token(user, [0])
    key2_path, cert2 = ca.rotate(dev_stack.ca_dir, "dev-2", dev_stack.signing_dir)
    key2 = keyfiles.load_private(key2_path)
    key2_path.unlink()
    new_pid, _ = dev_stack.token(user, [0])
    new_token = tokens.issue(
        key2, "dev-2", pid=new_pid, uid=user, esafs=[0], aud="pyis", scope="jpeg"
    )

    def job(pid, token):
        return {"type": "jpeg", "pid": pid, "fn": FN, "xsize": 64, "auth": token}

    assert ask(dev_stack.endpoint, job(old_pid, old_token))[0] == b""
    assert ask(dev_stack.endpoint, job(new_pid, new_token))[0] == b""
    ca.revoke(dev_stack.ca_dir, dev_stack.signing_dir / "dev-1.pem")
    ca.write_crl(dev_stack.ca_dir, dev_stack.crl)
    refused = ask(dev_stack.endpoint, job(old_pid, old_token))
    assert error_code(refused) == "unauthorized" and "unknown key" in refused[0].decode()
    assert ask(dev_stack.endpoint, job(new_pid, new_token))[0] == b""
    assert dev_stack.procmgr.pid == procmgr_pid and dev_stack.procmgr.proc.poll() is None


def test_a_revocation_noticed_on_sighup_also_drops_verified_tokens(own_stack):
    from procmgr.__main__ import dev_user

    pid, token = own_stack.token(dev_user(), [0])
    job = {"type": "jpeg", "pid": pid, "fn": FN, "xsize": 64, "auth": token}
    assert ask(own_stack.endpoint, job)[0] == b""  # verified, and remembered
    ca.revoke(own_stack.ca_dir, own_stack.signing_dir / "dev-1.pem")
    ca.write_crl(own_stack.ca_dir, own_stack.crl)
    own_stack.procmgr.signal(signal.SIGHUP)  # the signal, not a request, sees the change
    log = own_stack.workdir / "procmgr.log"
    deadline = time.monotonic() + 20
    while "trust store reloaded" not in log.read_text():
        assert time.monotonic() < deadline
        ask(own_stack.endpoint, {"pid": "monitor", "type": "status"})  # a loop turn
    refused = ask(own_stack.endpoint, job)
    assert error_code(refused) == "unauthorized" and "unknown key" in refused[0].decode()


# -- a JWT-only site: no isAuth key configured, and nothing else to say -------------------


def test_a_jwt_only_procmgr_starts_without_compat_settings_and_refuses_isauth(testdata):
    """No ``compat_pubkey`` (the flag given empty, the file silent): it starts, serves tokens,
    and refuses the C server's isAuth objects with a reason; ``compat_enabled`` is never set."""
    with dev_stack(testdata, args=("--compat-pubkey", "")) as stack:
        assert not (stack.workdir / "procmgr.toml").exists()  # no config file says anything
        pid, token = stack.token(dev_user(), [0])
        job = {"type": "jpeg", "pid": pid, "fn": "a.cbf", "xsize": 64, "auth": token}
        assert ask(stack.endpoint, job)[0] == b""
        isauth = stack.sign_session(dev_user(), [0])
        reply = ask(stack.endpoint, {"type": "jpeg", "pid": isauth, "fn": "a.cbf", "xsize": 64})
        assert error_code(reply) == "unauthorized" and b"isAuth" in reply[0]


def test_a_procmgr_with_no_way_to_verify_a_session_does_not_start(testdata):
    with pytest.raises(procs.StartError, match="neither trust_root nor compat_pubkey"):
        with dev_stack(testdata, args=("--compat-pubkey", "", "--trust-root", "")):
            pass
