"""``is-authsign``: the auth server's side of the compatible access object, and a verifier.

is-authsign keygen --out DIR           RSA-2048 key pair (private key written 0600)
is-authsign sign --key K --pid P --user U --esaf N [--lifetime S] [--redis URL]
is-authsign verify --pubkey K --pid P [--redis URL]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import redis
from cryptography.hazmat.primitives import serialization

from authsign import compat


def keygen(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    key = compat.generate_key()
    private = out / "isauth-key.pem"
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(compat.private_pem(key))
    (out / "isauth-pubkey.pem").write_bytes(compat.public_pem(key))
    print(f"wrote {private} (0600) and {out / 'isauth-pubkey.pem'}")
    return 0


def sign(args: argparse.Namespace) -> int:
    key = serialization.load_pem_private_key(Path(args.key).read_bytes(), password=None)
    isauth = compat.make_isauth(args.pid, args.user, args.esaf, args.lifetime)
    sig = compat.sign(key, isauth)  # type: ignore[arg-type]
    redis.Redis.from_url(args.redis).hset(args.pid, mapping={"isAuth": isauth, "isAuthSig": sig})
    print(f"stored a signed isAuth for user {args.user!r}, ESAFs {args.esaf}")
    return 0


def verify(args: argparse.Namespace) -> int:
    key = compat.load_public_key(Path(args.pubkey).read_bytes())
    isauth, sig = redis.Redis.from_url(args.redis).hmget(args.pid, "isAuth", "isAuthSig")
    try:
        access = compat.verify(key, isauth, sig, args.pid)
    except compat.AccessError as exc:
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 1
    print(f"ok: user {access.user!r}, ESAFs {sorted(access.allowed_esafs)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="is-authsign",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keygen")
    k.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("sign")
    s.add_argument("--key", required=True)
    s.add_argument("--user", required=True)
    s.add_argument("--esaf", type=int, action="append", default=[])
    s.add_argument("--lifetime", type=int, default=3600, help="seconds until exp")
    v = sub.add_parser("verify")
    v.add_argument("--pubkey", required=True)
    for p in (s, v):
        p.add_argument("--pid", required=True)
        p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args(argv)
    if args.command == "keygen":
        return keygen(args.out)
    return sign(args) if args.command == "sign" else verify(args)


if __name__ == "__main__":
    sys.exit(main())
