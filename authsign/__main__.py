"""``is-authsign``: the auth server's side of both access objects, a verifier, and logout.

Compatible form (the C server's RSA-signed isAuth in the session hash):
  is-authsign keygen --out DIR              isauth-key.pem (RSA-2048, 0600) + isauth-pubkey.pem
  is-authsign sign --key K --pid P --user U --esaf N [--esaf M] [--lifetime 3600] [--redis URL]
  is-authsign verify --pubkey K --pid P [--redis URL]

Native form (Ed25519 JWT; the signing certificate comes from the offline CA, is-ca issue,
which also makes the key; keygen --ed25519 makes a key alone):
  is-authsign keygen --ed25519 --kid KID --out DIR      KID-key.pem (0600) + KID-pubkey.pem
  is-authsign sign --jwt --key KID-key.pem --kid KID --pid P --user U --esaf N [--esaf M]
      --aud GROUP [--scope "jpeg spots meta index list tile pixels newest"] [--lifetime|--ttl 600]
      [--redis URL] [--inline]
      [--path PREFIX ...]   bound to those prefixes inside the ESAF home (run7/, run7/a_)
      with --redis: HSET P isToken TOKEN and EXPIRE P (lifetime + 60 s); the token is printed
      (alone on stdout) only with --inline or without --redis
  is-authsign verify --jwt --trust-root ROOT --trust-certs DIR [--trust-crl CRL] --aud GROUP
      --pid P [--type jpeg] [--leeway 30] (--token T | --token-file F|- | --redis URL)
      --redis with --token/--token-file also checks the session hash, as the procmgr does

Signed viewer links (native; a session of their own, revoke-session ends it):
  is-authsign link --key KID-key.pem --kid KID --user U --esaf N --path PREFIX --aud GROUP
      --base-url https://web/ --redis URL [--ttl 600]
      [--scope "jpeg meta spots list tile pixels counts"]
      prints the URL (the token rides in its #fragment, which browsers never send)

Either form:
  is-authsign revoke-session --pid P --redis URL [--delete]   field revoked=1, or logout

Exit status: 0 done/ok, 1 access refused (verify: "unauthorized: ..." or "forbidden: ..."),
2 a usage, file, key or Redis error (one line on stderr). Key material is never printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import redis
from cryptography.hazmat.primitives.asymmetric import rsa

from authsign import cli_jwt, compat, links
from authsign.cli_jwt import CliError
from pyis_common import keyfiles
from pyis_common.errors import Refused
from pyis_common.jobtypes import DEFAULT_SCOPE
from pyis_common.version import add_version

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"  # the compatible form's historical default
# (command, native form): (options it requires, options only the other form takes)
FORMS: dict[tuple[str, bool], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("keygen", False): ((), ("kid",)),
    ("keygen", True): (("kid",), ()),
    ("sign", False): (("key", "pid", "user"), ("kid", "aud", "scope", "inline", "path")),
    ("sign", True): (("key", "kid", "pid", "user", "esaf", "aud"), ()),
    ("verify", False): (
        ("pubkey", "pid"),
        ("trust_root", "trust_certs", "trust_crl", "aud", "type", "token", "token_file", "leeway"),
    ),
    ("verify", True): (("trust_root", "trust_certs", "aud", "pid"), ("pubkey",)),
}


def keygen(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    key = compat.generate_key()
    # 0600 in one step (O_EXCL): never readable by others, never silently replaced
    private = keyfiles.write_private(out / "isauth-key.pem", compat.private_pem(key))
    (out / "isauth-pubkey.pem").write_bytes(compat.public_pem(key))
    print(f"wrote {private} (0600) and {out / 'isauth-pubkey.pem'}")
    return 0


def sign(args: argparse.Namespace) -> int:
    key = cli_jwt.load_private_key(args.key)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < compat.MIN_RSA_BITS:
        kind = cli_jwt.key_kind(key)
        raise CliError(f"{args.key}: the key is {kind}; the compatible form needs RSA-2048+")
    if args.lifetime <= 0:
        raise CliError("--lifetime must be positive")
    isauth = compat.make_isauth(args.pid, args.user, args.esaf, args.lifetime)
    signature = compat.sign(key, isauth)
    cli_jwt.connect(args.redis or DEFAULT_REDIS).hset(
        args.pid, mapping={"isAuth": isauth, "isAuthSig": signature}
    )
    print(f"stored a signed isAuth for user {args.user!r}, ESAFs {args.esaf}")
    return 0


def verify(args: argparse.Namespace) -> int:
    try:
        key = compat.load_public_key(Path(args.pubkey).read_bytes())
    except OSError as exc:
        raise CliError(f"{args.pubkey}: cannot read the key file ({exc.strerror})") from None
    except ValueError:
        raise CliError(f"{args.pubkey}: not an RSA public key of 2048 bits or more") from None
    try:
        isauth, sig = cli_jwt.session(args.redis or DEFAULT_REDIS, args.pid, "isAuth", "isAuthSig")
        access = compat.verify(key, isauth, sig, args.pid)
    except Refused as exc:
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 1
    print(f"ok: user {access.user!r}, ESAFs {sorted(access.allowed_esafs)}")
    return 0


def revoke_session(args: argparse.Namespace) -> int:
    """Mark the session hash revoked (the procmgr refuses it), or delete it (logout)."""
    r, pid = cli_jwt.connect(args.redis), args.pid
    if args.delete:
        gone = r.delete(pid)
        print(f"deleted session {pid!r}" if gone else f"no session {pid!r}: nothing to delete")
        return 0

    def mark(pipe: redis.client.Pipeline) -> bool:
        if not pipe.exists(pid):  # never create a tombstone hash that would never expire
            return False
        pipe.multi()
        pipe.hset(pid, "revoked", "1")
        return True

    try:
        # redis-py types the callable as returning None, though value_from_callable returns it
        marked = r.transaction(mark, pid, value_from_callable=True)  # type: ignore[arg-type]
    except redis.exceptions.ResponseError:
        raise CliError(f"key {pid!r} is not a session hash") from None
    print(f"revoked session {pid!r}" if marked else f"no session {pid!r}: nothing to revoke")
    return 0


def parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    ap = argparse.ArgumentParser(
        prog="is-authsign",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version(ap)
    sub = ap.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keygen", help="make a signing key pair")
    k.add_argument("--out", type=Path, required=True, help="directory for the key files")
    k.add_argument("--ed25519", dest="native", action="store_true", help="a JWT signing key")
    k.add_argument("--kid", help="signing key id (with --ed25519)")
    s = sub.add_parser("sign", help="issue an access object for a session")
    s.add_argument("--jwt", dest="native", action="store_true", help="the native JWT form")
    s.add_argument("--key", help="private key PEM (0600)")
    s.add_argument("--kid", help="signing key id (its certificate names it)")
    s.add_argument("--user", help="login name")
    s.add_argument("--esaf", type=int, action="append", default=[], help="allowed ESAF (repeat)")
    s.add_argument("--aud", help="the image-host group (the procmgr's audience)")
    s.add_argument("--scope", help=f'job types, default "{DEFAULT_SCOPE}"')
    s.add_argument(
        "--lifetime", "--ttl", type=int, help="seconds (compat 3600; jwt 600, at most 3600)"
    )
    s.add_argument(
        "--path", action="append", default=[], help="jwt: a path prefix in the ESAF home (repeat)"
    )
    s.add_argument("--inline", action="store_true", help="print the token (also with --redis)")
    v = sub.add_parser("verify", help="check a session's access object as the procmgr would")
    v.add_argument("--jwt", dest="native", action="store_true", help="the native JWT form")
    v.add_argument("--pubkey", help="the isAuth RSA public key (compat)")
    v.add_argument("--trust-root", help="the offline CA's root certificate")
    v.add_argument("--trust-certs", help="directory of signing certificates")
    v.add_argument("--trust-crl", help="the root's CRL")
    v.add_argument("--aud", help="the image-host group (the procmgr's audience)")
    v.add_argument("--type", help="job type to check against the scope (default jpeg)")
    v.add_argument("--leeway", type=float, help="clock skew tolerated, s (default 30)")
    source = v.add_mutually_exclusive_group()
    source.add_argument("--token", help="the token itself (visible in ps: prefer a file)")
    source.add_argument("--token-file", help="file holding the token; - reads stdin")
    for p in (s, v):
        p.add_argument("--pid", help="session id")
        p.add_argument("--redis", help=f"session Redis URL (compat default {DEFAULT_REDIS})")
    ln = sub.add_parser("link", help="a short-lived signed viewer link to one dataset")
    for name in ("key", "kid", "user", "path", "aud", "base_url", "redis"):
        ln.add_argument("--" + name.replace("_", "-"), required=True)
    ln.add_argument("--esaf", type=int, required=True, help="the dataset's ESAF")
    ln.add_argument("--ttl", type=int, default=600, help="seconds, at most 3600")
    ln.add_argument("--scope", default=links.VIEWER_SCOPE, help="job types the viewer may ask")
    r = sub.add_parser("revoke-session", help="mark a session revoked, or --delete it (logout)")
    r.add_argument("--pid", required=True, help="session id")
    r.add_argument("--redis", required=True, help="the web host's session Redis URL")
    r.add_argument("--delete", action="store_true", help="delete the session hash instead")
    return ap, {"keygen": k, "sign": s, "verify": v}


def check_form(subs: dict[str, argparse.ArgumentParser], args: argparse.Namespace) -> None:
    """Options per form (argparse cannot say "required with --jwt"); exit 2 naming the problem."""
    if args.command not in subs:
        return
    sub, native = subs[args.command], args.native
    required, foreign = FORMS[(args.command, native)]
    flag = "--ed25519" if args.command == "keygen" else "--jwt"
    for name in required:
        if getattr(args, name) in (None, []):
            sub.error(f"--{name.replace('_', '-')} is required" + f" with {flag}" * native)
    for name in foreign:
        if getattr(args, name) not in (None, [], False):
            opt = "--" + name.replace("_", "-")
            sub.error(
                f"{opt} is for the compatible form, not {flag}" if native else f"{opt} needs {flag}"
            )
    if args.command == "verify" and native:
        if args.token is None and args.token_file is None and args.redis is None:
            sub.error("--jwt needs --token, --token-file or --redis")
        args.type = "jpeg" if args.type is None else args.type
        args.leeway = 30.0 if args.leeway is None else args.leeway
    if args.command == "sign":
        args.lifetime = (600 if native else 3600) if args.lifetime is None else args.lifetime
        args.scope = DEFAULT_SCOPE if args.scope is None else args.scope


def run(args: argparse.Namespace) -> int:
    if args.command == "keygen":
        if args.out.exists() and not args.out.is_dir():
            raise CliError(f"--out {args.out}: not a directory")
        return cli_jwt.keygen(args.out, args.kid) if args.native else keygen(args.out)
    if args.command == "revoke-session":
        return revoke_session(args)
    if args.command == "link":
        return cli_jwt.link(args)
    if args.command == "sign":
        return cli_jwt.sign(args) if args.native else sign(args)
    return cli_jwt.verify(args) if args.native else verify(args)


def main(argv: list[str] | None = None) -> int:
    ap, subs = parser()
    args = ap.parse_args(argv)
    check_form(subs, args)
    # the trust store says why it refuses a certificate or CRL; an operator needs to see that
    logging.basicConfig(level=logging.WARNING, format="is-authsign: %(message)s")
    where = f"is-authsign {args.command}"
    try:
        return run(args)
    except CliError as exc:
        print(f"{where}: {exc}", file=sys.stderr)
    except FileExistsError as exc:
        print(f"{where}: {exc.filename} exists; a key file is never overwritten", file=sys.stderr)
    except OSError as exc:
        print(f"{where}: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
    except redis.exceptions.RedisError as exc:
        url = cli_jwt.where(getattr(args, "redis", None) or DEFAULT_REDIS)
        print(f"{where}: redis {url}: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
