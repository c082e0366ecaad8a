"""is-authsign: revoking sessions, signed links, path-bound tokens, and its errors (one line,
exit 2, no key material in any output)."""

from __future__ import annotations

import shutil
from pathlib import Path

import jwt
import pytest
import redis

from authsign import links
from authsign.cli_jwt import SESSION_MARGIN_S
from certs import ca
from tests.support.authsigncli import (
    AUD,
    KID,
    Pki,
    Run,
    one_line_error,
    refused,
    sign_jwt,
    swap,
    verify_jwt,
)

# --- revoke-session ----------------------------------------------------------------------------


def test_revoke_session_marks_the_hash_and_delete_removes_it(
    cli: Run, pki: Pki, redis_url: str, db: redis.Redis, pid: str
):
    token = cli(*sign_jwt(pki, pid, "--redis", redis_url, "--inline")).stdout.strip()
    assert cli("revoke-session", "--pid", pid, "--redis", redis_url).returncode == 0
    assert db.hget(pid, "revoked") == b"1" and db.hexists(pid, "isToken") and db.ttl(pid) > 0
    revoked = "unauthorized: this session has been revoked"
    refused(cli(*verify_jwt(pki, pid, "--redis", redis_url)), revoked)
    refused(cli(*verify_jwt(pki, pid, "--redis", redis_url, "--token", token)), revoked)
    assert cli("revoke-session", "--pid", pid, "--redis", redis_url, "--delete").returncode == 0
    assert db.exists(pid) == 0
    gone = "unauthorized: no access object for this session"
    refused(cli(*verify_jwt(pki, pid, "--redis", redis_url, "--token", token)), gone)
    res = cli("revoke-session", "--pid", pid, "--redis", redis_url)
    assert res.returncode == 0 and "nothing to revoke" in res.stdout
    assert db.exists(pid) == 0  # no tombstone hash that would never expire


# --- errors ------------------------------------------------------------------------------------


def test_no_private_key_reaches_any_output(cli: Run, pki: Pki, tmp_path: Path, pid: str):
    """Key files passed where something else belongs; the cli fixture checks every output."""
    assert cli("keygen", "--out", tmp_path).returncode == 0
    rsa_key = tmp_path / "isauth-key.pem"
    one_line_error(cli("verify", "--pubkey", rsa_key, "--pid", pid), "not an RSA public key")
    one_line_error(cli(*swap(sign_jwt(pki, pid), pki.key, rsa_key)), "the key is RSA")
    one_line_error(cli("sign", "--key", pki.key, "--pid", pid, "--user", "u"), "Ed25519")
    res = cli(*swap(verify_jwt(pki, pid, "--token", "x"), str(pki.ca_dir / ca.ROOT_CERT), pki.key))
    one_line_error(res, "not a CA root")
    res = cli(*verify_jwt(pki, pid, "--token-file", pki.key))
    refused(res, "unauthorized: token is malformed")
    leaky = tmp_path / "leaky"
    shutil.copytree(pki.certs, leaky)
    shutil.copy(pki.key, leaky / "signing-key.pem")  # a private key where certificates belong
    res = cli(*swap(verify_jwt(pki, pid, "--token", "x"), str(pki.certs), leaky))
    assert res.returncode == 1 and "holds a private key" in res.stderr


@pytest.mark.parametrize("form", ["jwt", "compat", "pubkey", "directory"])
def test_a_bad_key_path_exits_2_with_one_line(cli: Run, pki: Pki, tmp_path: Path, form: str):
    missing = tmp_path / "no-such-key.pem"
    argv: dict[str, list[object]] = {
        "jwt": swap(sign_jwt(pki, "p"), pki.key, missing),
        "compat": ["sign", "--key", missing, "--pid", "p", "--user", "u"],
        "pubkey": ["verify", "--pubkey", missing, "--pid", "p"],
        "directory": ["sign", "--key", tmp_path, "--pid", "p", "--user", "u"],
    }
    one_line_error(cli(*argv[form]), str(tmp_path))


def test_bad_arguments_and_unreachable_redis_exit_2(cli: Run, pki: Pki, tmp_path: Path):
    for argv, words in [
        (
            ["sign", "--key", pki.key, "--kid", KID, "--pid", "p", "--user", "u"],
            "--kid needs --jwt",
        ),
        (sign_jwt(pki, "p", "--lifetime", 4000), "--lifetime must be in 1..3600"),
        (sign_jwt(pki, "p", "--scope", "jpg"), "--scope"),
        ([a for a in sign_jwt(pki, "p") if a not in ("--esaf", 3, 5)], "--esaf is required"),
        (verify_jwt(pki, "p"), "--jwt needs --token, --token-file or --redis"),
        (verify_jwt(pki, "p", "--pubkey", "k"), "--pubkey is for the compatible form"),
    ]:
        res = cli(*argv)
        assert res.returncode == 2 and words in res.stderr and res.stdout == "", res.stderr
    ca.issue_signing(pki.ca_dir, "auth-y", tmp_path)
    key = shutil.copy(pki.key, tmp_path / "auth-1-key.pem")
    other = swap(swap(sign_jwt(pki, "p"), KID, "auth-y"), pki.key, key)  # auth-y.pem beside it
    one_line_error(cli(*other), "does not certify")
    res = cli("revoke-session", "--pid", "p", "--redis", "redis://:hunter2@127.0.0.1:1/0")
    one_line_error(res, "Connection refused")
    assert "hunter2" not in res.stderr


def test_jwt_sign_path_and_ttl_bind_the_token(cli: Run, pki: Pki, pid: str):
    res = cli(*sign_jwt(pki, pid, "--path", "run7/", "--path", "run9/a_", "--ttl", 120))
    token = res.stdout.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["paths"] == ["run7/", "run9/a_"] and claims["exp"] - claims["iat"] == 120
    assert claims["jti"]
    ok = cli(*verify_jwt(pki, pid, "--token", token), secret=token)
    assert ok.returncode == 0 and "paths ['run7/', 'run9/a_']" in ok.stdout


@pytest.mark.parametrize("prefix", ["/data/run7/", "run7/../run8/", ""])
def test_jwt_sign_refuses_a_malformed_path(cli: Run, pki: Pki, pid: str, prefix: str):
    one_line_error(cli(*sign_jwt(pki, pid, "--path", prefix)), "--path")


def test_link_prints_a_url_and_stores_its_own_session(cli: Run, pki: Pki, redis_url: str, db):
    argv = ["link", "--key", pki.key, "--kid", KID, "--user", "alice", "--esaf", 5]
    argv += ["--path", "run7/a_", "--aud", AUD, "--base-url", "https://web.example/view"]
    res = cli(*argv, "--ttl", 300, "--redis", redis_url)
    assert res.returncode == 0, res.stderr
    parsed = links.parse(res.stdout.strip())
    assert res.stdout.startswith("https://web.example/view#") and parsed.token not in res.stderr
    assert db.hget(parsed.pid, "isToken").decode() == parsed.token
    assert 300 < db.ttl(parsed.pid) <= 300 + SESSION_MARGIN_S
    claims = jwt.decode(parsed.token, options={"verify_signature": False})
    assert claims["paths"] == ["run7/a_"] and claims["pid"] == parsed.pid
    assert claims["scope"] == links.VIEWER_SCOPE
    bad = cli(*swap(argv, "run7/a_", "/etc/"), "--redis", redis_url)
    one_line_error(bad, "absolute")
