"""``is-authsign`` as the auth server and an operator run it: a subprocess per command, a real
redis-server standing in for the web host's session Redis, and an offline CA made with certs.ca.

Every run is checked for what must never appear: a private key (any ``*key.pem`` under the test's
directories, or a PEM private key header), a traceback, and in ``verify`` the token itself.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from authsign import compat, tokens
from authsign.cli_jwt import SESSION_MARGIN_S
from certs import ca
from pyis_common import keyfiles
from tests.conftest import REPO
from tests.support.authsigncli import (
    AUD,
    KID,
    OK,
    Pki,
    Run,
    make_pki,
    one_line_error,
    refused,
    sign_jwt,
    swap,
    verify_jwt,
)

# --- keygen ------------------------------------------------------------------------------------


def test_keygen_rsa_writes_a_0600_key_and_never_overwrites_it(cli: Run, tmp_path: Path):
    out = tmp_path / "rsa"
    assert cli("keygen", "--out", out).returncode == 0
    private, public = out / "isauth-key.pem", out / "isauth-pubkey.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    assert compat.load_public_key(public.read_bytes()).key_size == 2048
    before = private.read_bytes()
    one_line_error(cli("keygen", "--out", out), "exists")
    assert private.read_bytes() == before


def test_keygen_ed25519_writes_a_0600_key_and_its_public_key(cli: Run, tmp_path: Path):
    out = tmp_path / "ed"
    res = cli("keygen", "--ed25519", "--kid", "auth-9", "--out", out)
    assert res.returncode == 0, res.stderr
    private, public = out / "auth-9-key.pem", out / "auth-9-pubkey.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    assert keyfiles.load_private(private).public_key() == keyfiles.load_public(public)
    before = private.read_bytes()
    one_line_error(cli("keygen", "--ed25519", "--kid", "auth-9", "--out", out), "exists")
    assert private.read_bytes() == before
    one_line_error(cli("keygen", "--ed25519", "--kid", "../x", "--out", out), "--kid must match")


def test_a_keygen_key_is_trusted_once_the_ca_certifies_it(
    cli: Run, pki: Pki, tmp_path: Path, pid: str
):
    assert cli("keygen", "--ed25519", "--kid", "auth-new", "--out", tmp_path).returncode == 0
    argv = swap(sign_jwt(pki, pid), pki.key, tmp_path / "auth-new-key.pem")
    token = cli(*swap(argv, KID, "auth-new")).stdout.strip()
    public = keyfiles.load_public(tmp_path / "auth-new-pubkey.pem")
    access = tokens.verify(token, {"auth-new": public}.get, pid=pid, aud=AUD, job_type="jpeg")
    assert access.user == "alice"
    refused(
        cli(*verify_jwt(pki, pid, "--token", token)), "unauthorized: token signed by an unknown key"
    )
    certify = [
        sys.executable,
        "-m",
        "certs",
        "certify",
        "--ca-dir",
        str(pki.ca_dir),
        "--kid",
        "auth-new",
        "--pubkey",
        str(tmp_path / "auth-new-pubkey.pem"),
        "--out",
        str(pki.certs),
    ]
    done = subprocess.run(certify, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == str(pki.certs / "auth-new.pem")
    assert cli(*verify_jwt(pki, pid, "--token", token)).returncode == 0


# --- the compatible form -----------------------------------------------------------------------


def test_compat_sign_and_verify_round_trip_through_redis(
    cli: Run, tmp_path: Path, redis_url: str, db: redis.Redis, pid: str
):
    assert cli("keygen", "--out", tmp_path).returncode == 0
    who = ["--pid", pid, "--user", "alice", "--esaf", 5, "--esaf", 3, "--redis", redis_url]
    assert cli("sign", "--key", tmp_path / "isauth-key.pem", *who).returncode == 0
    assert db.hexists(pid, "isAuth") and db.hexists(pid, "isAuthSig")
    pub = ["verify", "--pubkey", tmp_path / "isauth-pubkey.pem", "--redis", redis_url]
    ok = cli(*pub, "--pid", pid)
    assert ok.returncode == 0 and ok.stdout == "ok: user 'alice', ESAFs [3, 5]\n"
    refused(cli(*pub, "--pid", pid + "x"), "unauthorized: no access object for this session")
    assert cli("revoke-session", "--pid", pid, "--redis", redis_url).returncode == 0
    refused(cli(*pub, "--pid", pid), "unauthorized: this session has been revoked")


# --- the native form: sign ---------------------------------------------------------------------


def test_jwt_sign_inline_prints_only_the_token_and_verify_accepts_it(cli: Run, pki: Pki, pid: str):
    for extra in (["--inline"], []):  # without --redis the token is the output either way
        res = cli(*sign_jwt(pki, pid, *extra))
        token = res.stdout.strip()
        assert res.returncode == 0 and res.stdout == token + "\n" and token.count(".") == 2
        ok = cli(*verify_jwt(pki, pid, "--token", token), secret=token)
        assert ok.returncode == 0, ok.stderr
        assert 590 <= int(OK.match(ok.stdout.strip()).group(1)) <= 600  # type: ignore[union-attr]
    piped = cli(*verify_jwt(pki, pid, "--token-file", "-"), stdin=token + "\n", secret=token)
    assert piped.returncode == 0 and OK.match(piped.stdout.strip())


def test_jwt_sign_redis_writes_the_token_and_an_expiry(
    cli: Run, pki: Pki, redis_url: str, db: redis.Redis, pid: str
):
    res = cli(*sign_jwt(pki, pid, "--lifetime", 300, "--redis", redis_url))
    assert res.returncode == 0, res.stderr
    stored = db.hget(pid, "isToken").decode()  # type: ignore[union-attr]
    assert stored not in res.stdout + res.stderr  # not printed without --inline
    assert f"session {pid!r}" in res.stdout
    assert 300 < db.ttl(pid) <= 300 + SESSION_MARGIN_S
    public = keyfiles.load_private(pki.key).public_key()
    access = tokens.verify(stored, {KID: public}.get, pid=pid, aud=AUD, job_type="index")
    assert access.user == "alice" and access.allowed_esafs == {3, 5}
    assert access.expires is not None and 0 < access.expires - time.time() <= 300
    both = cli(*sign_jwt(pki, pid, "--redis", redis_url, "--inline"))
    assert both.returncode == 0 and both.stdout.encode() == db.hget(pid, "isToken") + b"\n"
    assert 600 < db.ttl(pid) <= 600 + SESSION_MARGIN_S


# --- the native form: verify -------------------------------------------------------------------


def test_jwt_verify_from_redis(cli: Run, pki: Pki, redis_url: str, pid: str):
    assert cli(*sign_jwt(pki, pid, "--redis", redis_url)).returncode == 0
    ok = cli(*verify_jwt(pki, pid, "--redis", redis_url, "--type", "spots"))
    assert ok.returncode == 0 and OK.match(ok.stdout.strip()), ok.stderr
    refused(
        cli(*verify_jwt(pki, "sess-none", "--redis", redis_url)),
        "unauthorized: no access object for this session",
    )


@pytest.mark.parametrize(
    ("sign_extra", "verify_extra", "verdict"),
    [
        ([], ["--aud", "other-group"], "unauthorized: token was issued for another audience"),
        ([], ["--pid", "sess-other"], "unauthorized: token was issued for another session"),
        (["--scope", "meta"], [], "forbidden: token scope does not include this job type"),
    ],
)
def test_jwt_verify_refuses_naming_the_reason(
    cli: Run, pki: Pki, pid: str, sign_extra: list[str], verify_extra: list[str], verdict: str
):
    token = cli(*sign_jwt(pki, pid, *sign_extra)).stdout.strip()
    refused(cli(*verify_jwt(pki, pid, "--token", token, *verify_extra), secret=token), verdict)


def test_jwt_verify_refuses_an_expired_token(cli: Run, pki: Pki, tmp_path: Path, pid: str):
    key = keyfiles.load_private(pki.key)
    claims = {"pid": pid, "uid": "alice", "esafs": [3, 5], "aud": AUD, "scope": "jpeg"}
    token = tokens.issue(key, KID, **claims, now=time.time() - 3600)  # type: ignore[arg-type]
    (tmp_path / "token").write_text(token + "\n")
    res = cli(*verify_jwt(pki, pid, "--token-file", tmp_path / "token"), secret=token)
    refused(res, "unauthorized: token has expired")


def test_jwt_verify_refuses_a_revoked_signing_certificate(cli: Run, tmp_path: Path, pid: str):
    own = make_pki(tmp_path, "auth-1")  # its own CA: revoking must not touch the module's
    token = cli(*sign_jwt(own, pid)).stdout.strip()
    assert cli(*verify_jwt(own, pid, "--token", token)).returncode == 0
    ca.revoke(own.ca_dir, own.certs / f"{KID}.pem")
    ca.write_crl(own.ca_dir, own.crl)
    res = cli(*verify_jwt(own, pid, "--token", token), secret=token)
    refused(res, "unauthorized: token signed by an unknown key")
    assert "refused: it is revoked" in res.stderr
