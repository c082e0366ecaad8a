"""The procmgr's side of the CA: which auth-server keys to believe, by ``kid``.

Only the root certificate is trusted. Each signing certificate in ``certs_dir`` is believed
while it is signed by that root, inside its validity period (checked again at every lookup,
so a certificate that expires mid-run stops working without a reload), limited to digital
signatures, not a CA, and not on the root's CRL. A configured CRL that is missing, forged or
past its next update makes every key untrusted: a stale list could be hiding a revocation.
``reload_if_changed`` is a stat per file, cheap enough to call on every request.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from certs.ca import KID_URI_PREFIX, valid_kid

log = logging.getLogger("certs.trust")
_KNOWN = (x509.BasicConstraints, x509.KeyUsage, x509.SubjectAlternativeName)
# what cryptography raises for a certificate that does not parse or does not chain to the root
_BAD_CERT = (
    InvalidSignature,
    ValueError,
    TypeError,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
_Stamp = tuple[tuple[tuple[str, int, int, int], ...], tuple[int, int, int] | None]


class Refused(Exception):
    """A certificate or CRL failed a check; the message names which."""


@dataclass(frozen=True)
class _Signer:
    key: Ed25519PublicKey
    not_before: datetime
    not_after: datetime


class TrustStore:
    def __init__(self, root_pem: Path, certs_dir: Path, crl_path: Path | None = None) -> None:
        """Load the root now (a bad root is a configuration error), then the signers."""
        self.root = _load_root(root_pem)
        self.certs_dir, self.crl_path = certs_dir, crl_path
        self._signers: dict[str, _Signer] = {}
        self._crl_next_update: datetime | None = None
        self._stamp: _Stamp | None = None
        if crl_path is None:
            log.warning("no CRL configured: revoked signing certificates stay trusted")
        self.reload_if_changed()

    def key_for(self, kid: str) -> Ed25519PublicKey | None:
        """The public key for ``kid`` if it is trusted right now, else None."""
        signer = self._signers.get(kid)
        now = datetime.now(UTC)
        if signer is None or not signer.not_before <= now <= signer.not_after:
            return None
        if self._crl_next_update is not None and now > self._crl_next_update:
            return None
        return signer.key

    def kids(self) -> list[str]:
        return sorted(self._signers)

    def reload_if_changed(self) -> bool:
        """Re-read the certificates and CRL if any file was added, removed or replaced.

        The stamp is taken before reading, so a file replaced mid-reload is read again next time.
        """
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        self._load()
        return True

    def _stat(self) -> _Stamp:
        """What identifies the files now. Taken for every token a procmgr verifies, so with
        ``os.scandir`` (a tenth of what a pathlib glob costs) over what _pem_files reads."""
        files = []
        try:
            with os.scandir(self.certs_dir) as entries:
                names = sorted(e.name for e in entries if _is_pem_name(e.name))
            for name in names:
                st = os.stat(os.path.join(self.certs_dir, name))
                files.append((name, st.st_mtime_ns, st.st_size, st.st_ino))
        except FileNotFoundError:
            pass  # the directory or a file vanished: the stamp differs, _load reports it
        crl = None
        if self.crl_path is not None:
            try:
                st = os.stat(self.crl_path)
                crl = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                pass
        return tuple(files), crl

    def _load(self) -> None:
        now = datetime.now(UTC)
        try:
            revoked = self._load_crl(now)
        except Refused as exc:
            log.error("CRL %s refused: %s; trusting no signing key", self.crl_path, exc)
            self._signers = {}
            return
        signers: dict[str, _Signer] = {}
        ambiguous: set[str] = set()
        for path in _pem_files(self.certs_dir):
            try:
                kid, signer = self._check(path, now, revoked)
            except Refused as exc:
                log.warning("signing certificate %s refused: %s", path, exc)
                continue
            if kid in signers or kid in ambiguous:
                log.warning("signing certificate %s refused: kid %r is claimed twice", path, kid)
                signers.pop(kid, None)
                ambiguous.add(kid)
                continue
            signers[kid] = signer
        self._signers = signers
        log.info("trusting signing keys %s", sorted(signers) or "(none)")

    def _load_crl(self, now: datetime) -> frozenset[int]:
        self._crl_next_update = None
        if self.crl_path is None:
            return frozenset()
        root_key = self.root.public_key()  # Ed25519: _load_root checked it
        if not isinstance(root_key, Ed25519PublicKey):
            raise Refused("the root key is not Ed25519")
        try:
            crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
            signed = crl.is_signature_valid(root_key)
        except (OSError, ValueError, TypeError) as exc:
            raise Refused(f"it cannot be read ({type(exc).__name__})") from None
        if crl.issuer != self.root.subject or not signed:
            raise Refused("it is not signed by the root")
        if crl.next_update_utc is None or now > crl.next_update_utc:
            raise Refused("it is past its next update")
        self._crl_next_update = crl.next_update_utc
        return frozenset(entry.serial_number for entry in crl)

    def _check(self, path: Path, now: datetime, revoked: frozenset[int]) -> tuple[str, _Signer]:
        """Every check a signing certificate must pass; raises Refused naming the first failure."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise Refused(f"it cannot be read ({type(exc).__name__})") from None
        if b"PRIVATE KEY-----" in data:
            raise Refused("it holds a private key, which does not belong on this host")
        try:
            cert = x509.load_pem_x509_certificate(data)
            cert.verify_directly_issued_by(self.root)
            extensions = list(cert.extensions)
        except _BAD_CERT as exc:
            reason = f"it is not a certificate issued by the root ({type(exc).__name__})"
            raise Refused(reason) from None
        if any(ext.critical and type(ext.value) not in _KNOWN for ext in extensions):
            raise Refused("it has a critical extension this verifier does not know")
        not_after = min(cert.not_valid_after_utc, self.root.not_valid_after_utc)
        if not cert.not_valid_before_utc <= now <= not_after:
            raise Refused("it is outside its validity period")
        values = {type(ext.value): ext.value for ext in extensions}
        basic, usage = values.get(x509.BasicConstraints), values.get(x509.KeyUsage)
        if not isinstance(basic, x509.BasicConstraints) or basic.ca:
            raise Refused("it is a CA certificate or lacks basic constraints")
        if not isinstance(usage, x509.KeyUsage) or not _signature_only(usage):
            raise Refused("its key usage is not digital signature only")
        key = cert.public_key()
        if not isinstance(key, Ed25519PublicKey):
            raise Refused("its key is not Ed25519")
        if cert.serial_number in revoked:
            raise Refused("it is revoked")
        return _kid(values.get(x509.SubjectAlternativeName)), _Signer(
            key, cert.not_valid_before_utc, not_after
        )


def _kid(san: object) -> str:
    """The one ``urn:pyis:kid:`` URI in the subject alternative names (the CN is not used)."""
    if not isinstance(san, x509.SubjectAlternativeName):
        raise Refused("it has no subject alternative name naming a kid")
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    kids = [u.removeprefix(KID_URI_PREFIX) for u in uris if u.startswith(KID_URI_PREFIX)]
    if len(kids) != 1 or not valid_kid(kids[0]):
        raise Refused("it does not name exactly one valid kid")
    return kids[0]


def _signature_only(usage: x509.KeyUsage) -> bool:
    others = (usage.content_commitment, usage.key_encipherment, usage.data_encipherment)
    return usage.digital_signature and not any(
        (*others, usage.key_agreement, usage.key_cert_sign, usage.crl_sign)
    )


def _pem_files(directory: Path) -> list[Path]:
    """``*.pem`` in ``directory``, without the dotted temporaries ``certs.ca`` renames from."""
    return sorted(p for p in directory.glob("*.pem") if _is_pem_name(p.name))


def _is_pem_name(name: str) -> bool:
    return name.endswith(".pem") and not name.startswith(".")


def _load_root(root_pem: Path) -> x509.Certificate:
    root = x509.load_pem_x509_certificate(root_pem.read_bytes())
    if not isinstance(root.public_key(), Ed25519PublicKey):
        raise ValueError(f"{root_pem}: the root key must be Ed25519")
    root.verify_directly_issued_by(root)  # self-signed, or InvalidSignature
    if not root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
        raise ValueError(f"{root_pem} is not a CA certificate")
    return root
