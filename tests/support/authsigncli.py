"""is-authsign as a command (tests/authsign/): a throwaway CA with one certified signing key, and
the argv and verdict helpers its tests share; the fixtures are in tests/authsign/conftest.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from certs import ca

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


Run = Callable[..., subprocess.CompletedProcess[str]]


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
