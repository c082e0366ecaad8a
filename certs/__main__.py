"""``is-ca``: the offline CA that certifies the auth servers' token signing keys.

is-ca init   --ca-dir D [--name N] [--days 3650]     root key (0600) and root.pem
is-ca issue  --ca-dir D --kid K --out DIR [--days 365] K-key.pem (0600) and K.pem
is-ca rotate --ca-dir D --kid NEW --out DIR           a new key; the old one stays until revoked
is-ca revoke --ca-dir D --cert DIR/OLD.pem            record the serial (publish a new CRL)
is-ca crl    --ca-dir D --out FILE [--days 7]         the root-signed CRL the procmgr reads
is-ca curve-keys --out DIR --name N                   N.key and N.key_secret (0600): a link key

Only file paths are printed, never key material. Copy ``K.pem``, ``root.pem`` and the CRL to
the image host; ``K-key.pem`` goes to the auth server only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from certs import ca
from pyis_common import curve
from pyis_common.keyfiles import load_public
from pyis_common.version import add_version

CURVE_KEYS = "write a CURVE key pair for the proxy <-> procmgr link (never overwrites one)"


def run(args: argparse.Namespace) -> list[Path]:
    """Do the command; return the files written (or updated) for the report line."""
    if args.command == "curve-keys":  # the proxy <-> procmgr link's keys, not the CA's
        return list(curve.make_certificates(args.out, args.name))
    if args.command == "init":
        ca.init_root(args.ca_dir, args.name, args.days)
        return [args.ca_dir / ca.ROOT_KEY, args.ca_dir / ca.ROOT_CERT]
    if args.command == "issue":
        return list(ca.issue_signing(args.ca_dir, args.kid, args.out, args.days))
    if args.command == "certify":
        key = load_public(args.pubkey)
        return [ca.certify(args.ca_dir, args.kid, key, args.out, args.days)]
    if args.command == "rotate":
        return list(ca.rotate(args.ca_dir, args.kid, args.out, args.days))
    if args.command == "revoke":
        ca.revoke(args.ca_dir, args.cert)
        return [args.ca_dir / ca.REVOKED]
    return [ca.write_crl(args.ca_dir, args.out, args.days)]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="is-ca", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_version(ap)
    sub = ap.add_subparsers(dest="command", required=True)
    commands = {
        "init": ("create the root key and certificate", 3650),
        "issue": ("make and certify a new signing key named by --kid", 365),
        "certify": ("certify a signing key the auth server made (is-authsign keygen)", 365),
        "rotate": ("issue the next signing key; revoke the old one when it is retired", 365),
        "revoke": ("revoke a signing certificate (takes effect with the next CRL)", None),
        "crl": ("write the CRL signed by the root", 7),
    }
    for name, (text, days) in commands.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--ca-dir", type=Path, required=True, help="the CA's private directory")
        if days is not None:
            p.add_argument("--days", type=int, default=days, help=f"validity (default {days})")
        if name in ("issue", "certify", "rotate"):
            p.add_argument("--kid", required=True, help="key id, e.g. auth-2025a")
        if name in ("issue", "certify", "rotate", "crl"):
            p.add_argument("--out", type=Path, required=True, help="output directory or file")
    keys = sub.add_parser("curve-keys", help=CURVE_KEYS, description=CURVE_KEYS)
    keys.add_argument("--out", type=Path, required=True, help="directory, e.g. /etc/pyis/curve")
    keys.add_argument("--name", required=True, help="proxy, procmgr or a host's name")
    sub.choices["init"].add_argument("--name", default="pyis offline CA", help="root CN")
    sub.choices["revoke"].add_argument("--cert", type=Path, required=True)
    sub.choices["certify"].add_argument("--pubkey", type=Path, required=True, help="PEM")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        written = run(args)
    except (OSError, ValueError) as exc:
        # messages name files and checks only; no key material reaches an exception here
        print(f"is-ca {args.command}: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
