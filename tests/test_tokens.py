"""The native access object and the offline CA, in-process: every refusal names its reason.

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
import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authsign import tokens
from certs import ca
from certs.__main__ import main as ca_main
from certs.trust import TrustStore
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


# --- the offline CA and the procmgr's trust store ------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, an auth server's directory, and the image host's trusted certificate directory."""
    dirs = {name: tmp_path / name for name in ("ca", "auth", "trusted")}
    ca.init_root(dirs["ca"])
    dirs["trusted"].mkdir()
    dirs["crl"] = ca.write_crl(dirs["ca"], tmp_path / "trusted-crl" / "crl.pem")
    return dirs


def _deploy(pki: dict[str, Path], kid: str, ca_dir: Path | None = None, **kw: Any) -> Path:
    """Issue ``kid`` and copy only its certificate to the image host."""
    key_path, cert_path = ca.issue_signing(ca_dir or pki["ca"], kid, pki["auth"], **kw)
    shutil.copy(cert_path, pki["trusted"] / cert_path.name)
    return key_path


def _store(pki: dict[str, Path]) -> TrustStore:
    return TrustStore(pki["ca"] / ca.ROOT_CERT, pki["trusted"], pki["crl"])


def _token(key_path: Path, kid: str) -> str:
    return tokens.issue(keyfiles.load_private(key_path), kid, pid=PID, uid=USER, esafs=[7],
                        aud=AUD, scope="jpeg")  # fmt: skip


def _check(store: TrustStore, token: str):
    return tokens.verify(token, store.key_for, pid=PID, aud=AUD, job_type="jpeg")


def test_private_key_files_are_0600_and_never_overwritten(pki):
    key_path = _deploy(pki, "auth-a")
    for path in (pki["ca"] / ca.ROOT_KEY, key_path):
        assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        ca.init_root(pki["ca"])
    with pytest.raises(FileExistsError):
        ca.issue_signing(pki["ca"], "auth-a", pki["auth"])


def test_certified_key_verifies_and_kid_comes_from_the_certificate(pki):
    key_path = _deploy(pki, "auth-a")
    store = _store(pki)
    assert store.kids() == ["auth-a"]
    assert _check(store, _token(key_path, "auth-a")).user == USER
    with pytest.raises(Refused, match="unknown key"):
        _check(store, _token(key_path, "auth-b"))


def test_certificate_from_another_root_is_refused(pki, tmp_path, caplog):
    ca.init_root(tmp_path / "rogue-ca")  # same CA name, different key
    rogue_key = _deploy(pki, "rogue", ca_dir=tmp_path / "rogue-ca")
    with caplog.at_level(logging.WARNING, logger="certs.trust"):
        store = _store(pki)
    assert store.key_for("rogue") is None
    assert "rogue.pem" in caplog.text and "not a certificate issued by the root" in caplog.text
    with pytest.raises(Refused, match="unknown key"):
        _check(store, _token(rogue_key, "rogue"))


def test_expired_certificate_is_refused(pki, caplog):
    past = datetime.now(UTC) - timedelta(days=10)
    key_path = _deploy(pki, "old", not_before=past, not_after=past + timedelta(days=1))
    with caplog.at_level(logging.WARNING, logger="certs.trust"):
        store = _store(pki)
    assert "old.pem" in caplog.text and "validity period" in caplog.text
    with pytest.raises(Refused, match="unknown key"):
        _check(store, _token(key_path, "old"))


def test_rotation_and_revocation_take_effect_on_reload(pki):
    old_key = _deploy(pki, "auth-a")
    store = _store(pki)
    assert store.reload_if_changed() is False  # nothing changed: a stat, no re-read
    new_key, new_cert = ca.rotate(pki["ca"], "auth-b", pki["auth"])
    shutil.copy(new_cert, pki["trusted"])
    assert store.reload_if_changed() is True
    old_token, new_token = _token(old_key, "auth-a"), _token(new_key, "auth-b")
    assert _check(store, old_token).user == _check(store, new_token).user == USER
    ca.revoke(pki["ca"], pki["auth"] / "auth-a.pem")
    ca.write_crl(pki["ca"], pki["crl"])
    assert store.reload_if_changed() is True
    assert store.kids() == ["auth-b"]
    with pytest.raises(Refused, match="unknown key"):
        _check(store, old_token)
    assert _check(store, new_token).user == USER


@pytest.mark.parametrize("crl", ["forged", "stale", "missing"])
def test_untrusted_crl_trusts_no_key(pki, tmp_path, crl, caplog):
    key_path = _deploy(pki, "auth-a")
    if crl == "forged":
        ca.init_root(tmp_path / "rogue-ca")
        ca.write_crl(tmp_path / "rogue-ca", pki["crl"])
    elif crl == "stale":
        ca.write_crl(pki["ca"], pki["crl"], days=0)
    else:
        pki["crl"].unlink()
    with caplog.at_level(logging.ERROR, logger="certs.trust"):
        store = _store(pki)
    assert store.kids() == [] and "trusting no signing key" in caplog.text
    with pytest.raises(Refused, match="unknown key"):
        _check(store, _token(key_path, "auth-a"))


def _usage(**on: bool) -> x509.KeyUsage:
    names = "digital_signature content_commitment key_encipherment data_encipherment"
    names += " key_agreement key_cert_sign crl_sign encipher_only decipher_only"
    return x509.KeyUsage(**dict.fromkeys(names.split(), False) | on)


def _root_signed(pki: dict[str, Path], name: str, usage: x509.KeyUsage, is_ca: bool) -> None:
    """A certificate the real root signed but with the wrong shape for a token signer."""
    root_key, root = ca.load_ca(pki["ca"])
    now = datetime.now(UTC)
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(ca.KID_URI_PREFIX + name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
        .issuer_name(root.subject)
        .public_key(Ed25519PrivateKey.generate().public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(san, critical=False)
        .sign(root_key, None)
    )
    (pki["trusted"] / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_wrongly_shaped_certificates_and_stray_keys_are_refused(pki, caplog):
    _root_signed(pki, "subca", _usage(digital_signature=True), is_ca=True)
    _root_signed(pki, "certsign", _usage(key_cert_sign=True), is_ca=False)
    leaked = _deploy(pki, "auth-a")
    shutil.copy(leaked, pki["trusted"])
    with caplog.at_level(logging.WARNING, logger="certs.trust"):
        store = _store(pki)
    assert store.kids() == ["auth-a"]
    assert "subca.pem refused: it is a CA certificate" in caplog.text
    assert "certsign.pem refused: its key usage is not digital signature only" in caplog.text
    assert "auth-a-key.pem refused: it holds a private key" in caplog.text
    assert "PRIVATE KEY-----" not in caplog.text


def test_cli_prints_paths_never_keys(tmp_path, capsys):
    ca_dir, out = tmp_path / "ca", tmp_path / "out"
    assert ca_main(["init", "--ca-dir", str(ca_dir)]) == 0
    assert ca_main(["issue", "--ca-dir", str(ca_dir), "--kid", "k1", "--out", str(out)]) == 0
    assert ca_main(["revoke", "--ca-dir", str(ca_dir), "--cert", str(out / "k1.pem")]) == 0
    assert ca_main(["crl", "--ca-dir", str(ca_dir), "--out", str(out / "crl.pem")]) == 0
    assert ca_main(["issue", "--ca-dir", str(ca_dir), "--kid", "../x", "--out", str(out)]) == 1
    printed = capsys.readouterr()
    assert str(out / "k1-key.pem") in printed.out and "BEGIN" not in printed.out + printed.err
    assert (out / "k1-key.pem").stat().st_mode & 0o777 == 0o600
