"""The offline CA's operations: root, signing certificates, revocation, CRL, rotation.

Run on a machine that is not the web host nor the image host. Private keys are created 0600
with ``O_EXCL`` (never overwritten: a lost or leaked key is a rotation). Certificates and the
CRL are written to a temporary name and renamed into place, so a ``TrustStore`` watching the
directory never reads half a file. Nothing here prints or logs key material.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from pyis_common.keyfiles import load_private, save_private

ROOT_KEY, ROOT_CERT, REVOKED = "root-key.pem", "root.pem", "revoked.json"
KID_URI_PREFIX = "urn:pyis:kid:"  # the SAN URI that binds a kid into a signing certificate
KID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # safe as a file name and in a URI
BACKDATE = timedelta(minutes=5)  # so a verifier whose clock lags a little accepts a fresh cert


def valid_kid(kid: str) -> bool:
    return KID_RE.fullmatch(kid) is not None


def init_root(dir: Path, name: str = "pyis offline CA", days: int = 3650) -> None:
    """Create the root key (0600) and its self-signed certificate in ``dir``."""
    dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, None)
    )
    save_private(key, dir / ROOT_KEY)  # O_EXCL first: an existing CA is never replaced
    _atomic_write(dir / ROOT_CERT, cert.public_bytes(serialization.Encoding.PEM))


def issue_signing(
    ca_dir: Path,
    kid: str,
    out_dir: Path,
    days: int = 365,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[Path, Path]:
    """A new Ed25519 key ``<kid>-key.pem`` (0600) and its certificate ``<kid>.pem``.

    ``not_before``/``not_after`` override the validity period (tests make expired certs);
    the certificate never outlives the root.
    """
    key = Ed25519PrivateKey.generate()
    cert_path = certify(
        ca_dir, kid, key.public_key(), out_dir, days, not_before=not_before, not_after=not_after
    )
    key_path = out_dir / f"{kid}-key.pem"
    save_private(key, key_path)
    return key_path, cert_path


def certify(
    ca_dir: Path,
    kid: str,
    public_key: Ed25519PublicKey,
    out_dir: Path,
    days: int = 365,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Path:
    """The certificate ``<kid>.pem`` for a key the auth server made itself (the private key
    never has to leave that server)."""
    if not valid_kid(kid):
        raise ValueError(f"kid must match {KID_RE.pattern}")
    if not isinstance(public_key, Ed25519PublicKey):
        raise ValueError("signing keys are Ed25519")
    root_key, root = load_ca(ca_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path = out_dir / f"{kid}.pem"
    if cert_path.exists():
        raise FileExistsError(f"{cert_path} exists; a kid names one key forever")
    start = not_before or datetime.now(UTC) - BACKDATE
    end = min(not_after or start + timedelta(days=days), root.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kid)]))
        .issuer_name(root.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(KID_URI_PREFIX + kid)]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, None)
    )
    _atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def rotate(ca_dir: Path, new_kid: str, out_dir: Path, days: int = 365) -> tuple[Path, Path]:
    """Start a rotation: a new signing key and certificate. The old one stays valid until it
    is revoked, so tokens already handed out keep working while auth servers switch over."""
    return issue_signing(ca_dir, new_kid, out_dir, days)


def revoke(ca_dir: Path, cert_path: Path) -> None:
    """Record ``cert_path``'s serial in ``revoked.json``; it takes effect with the next CRL."""
    _root_key, root = load_ca(ca_dir)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        cert.verify_directly_issued_by(root)
    except (InvalidSignature, ValueError, TypeError) as exc:  # each means "not ours"
        raise ValueError(f"{cert_path} was not issued by this CA") from exc
    revoked = _load_revoked(ca_dir)
    serial = format(cert.serial_number, "x")
    if all(entry["serial"] != serial for entry in revoked):
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        revoked.append(
            {
                "serial": serial,
                "kid": str(names[0].value) if names else "",
                "revoked_at": datetime.now(UTC).isoformat(),
            }
        )
        _atomic_write(ca_dir / REVOKED, json.dumps(revoked, indent=2).encode() + b"\n")


def write_crl(ca_dir: Path, out: Path, days: int = 7) -> Path:
    """A CRL of every revoked serial, signed by the root, valid for ``days``.

    Verifiers refuse every signing key once the CRL's next update has passed, so the operator
    must publish a fresh one within ``days`` (a stale list could hide a revocation).
    """
    root_key, root = load_ca(ca_dir)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(now - BACKDATE)
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
    )
    for entry in _load_revoked(ca_dir):
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(entry["serial"], 16))
            .revocation_date(datetime.fromisoformat(entry["revoked_at"]))
            .build()
        )
        builder = builder.add_revoked_certificate(revoked)
    crl = builder.sign(root_key, None)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out, crl.public_bytes(serialization.Encoding.PEM))
    return out


def load_ca(ca_dir: Path) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    """The root's private key and certificate, checked to belong together."""
    key = load_private(ca_dir / ROOT_KEY)
    cert = x509.load_pem_x509_certificate((ca_dir / ROOT_CERT).read_bytes())
    if cert.public_key() != key.public_key():
        raise ValueError(f"{ca_dir / ROOT_CERT} does not match {ca_dir / ROOT_KEY}")
    return key, cert


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs only; a signing key signs tokens only."""
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _load_revoked(ca_dir: Path) -> list[dict[str, str]]:
    path = ca_dir / REVOKED
    return json.loads(path.read_text()) if path.exists() else []


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a public file under a temporary name, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
