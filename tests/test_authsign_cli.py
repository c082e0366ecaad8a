"""``is-authsign`` as the auth server and an operator run it: a subprocess per command, a real
redis-server standing in for the web host's session Redis, and an offline CA made with certs.ca.

Every run is checked for what must never appear: a private key (any ``*key.pem`` under the test's
directories, or a PEM private key header), a traceback, and in ``verify`` the token itself.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import redis

from authsign import compat, links, tokens
from authsign.cli_jwt import SESSION_MARGIN_S
from certs import ca
from pyis_common import keyfiles
from pyisdev import procs

REPO = Path(__file__).resolve().parents[1]
AUD, KID = "pyis", "auth-1"
OK = re.compile(r"^ok: user 'alice', ESAFs \[3, 5\], expires in (\d+) s$")


@dataclass
class Pki:
    """An offline CA, one certified signing key, and what the procmgr host holds."""

    dir: Path
    ca_dir: Path
    key: Path  # the auth server's signing key (made by is-ca issue)
    certs: Path  # certificates only, as the procmgr reads them
    crl: Path

    def trust(self) -> list[str]:
        root = str(self.ca_dir / ca.ROOT_CERT)
        return [
            "--trust-root",
            root,
            "--trust-certs",
            str(self.certs),
            "--trust-crl",
            str(self.crl),
        ]


def make_pki(base: Path, kid: str = KID) -> Pki:
    ca_dir, certs = base / "ca", base / "certs"
    ca.init_root(ca_dir)
    key, cert = ca.issue_signing(ca_dir, kid, base / "signing")
    certs.mkdir()
    shutil.copy(cert, certs / cert.name)
    return Pki(base, ca_dir, key, certs, ca.write_crl(ca_dir, base / "crl.pem"))


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, port = procs.redis_server(tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def db(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def pid() -> str:
    return "sess-" + secrets.token_hex(8)


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(tmp_path: Path, pki: Pki) -> Run:
    """Run ``is-authsign ARGS``; check the output for key material, tracebacks and ``secret``."""

    def run(*args: object, stdin: str | None = None, secret: str | None = None):
        argv = [sys.executable, "-m", "authsign", *map(str, args)]
        res = subprocess.run(
            argv, cwd=REPO, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        out = res.stdout + res.stderr
        assert "PRIVATE KEY" not in out and "Traceback" not in res.stderr, out
        for key_file in [*tmp_path.rglob("*key.pem"), *pki.dir.rglob("*key.pem")]:
            body = [line for line in key_file.read_text().splitlines() if "-----" not in line]
            assert not any(line in out for line in body if len(line) >= 16), key_file
        assert secret is None or secret not in out
        return res

    return run


def sign_jwt(pki: Pki, pid: str, *extra: object) -> list[object]:
    who = ["--pid", pid, "--user", "alice", "--esaf", 5, "--esaf", 3, "--aud", AUD]
    return ["sign", "--jwt", "--key", pki.key, "--kid", KID, *who, *extra]


def swap(argv: list[object], old: object, new: object) -> list[object]:
    return [new if arg == old else arg for arg in argv]


def verify_jwt(pki: Pki, pid: str, *extra: object) -> list[object]:
    return ["verify", "--jwt", *pki.trust(), "--aud", AUD, "--pid", pid, *extra]


def refused(res: subprocess.CompletedProcess[str], verdict: str) -> None:
    """Exit 1, nothing on stdout, and the verdict as the last line on stderr."""
    assert res.returncode == 1 and res.stdout == "", res.stderr
    assert res.stderr.strip().splitlines()[-1] == verdict


def one_line_error(res: subprocess.CompletedProcess[str], words: str) -> None:
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], res.stderr


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
