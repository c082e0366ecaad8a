"""The offline CA and the procmgr's trust store, in-process: certified keys verify, keys from
another root, expired, revoked or wrongly shaped certificates and stray keys are refused, and a
rotation or revocation takes effect on reload; is-ca prints paths, never keys.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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

PID, AUD, USER = "sess-1", "pyis-images", "alice"


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
