"""``is-authsign``'s native (JWT) commands, and helpers both forms share.

Nothing here prints key material. A token is printed only by ``sign --jwt`` to stdout, where it
is the command's output; ``verify`` never prints the token it checks. Errors a user can fix
(files, key types, arguments, Redis) raise ``CliError``: one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authsign import links, pathclaim, sessioncheck, tokens
from certs.ca import KID_RE, valid_kid
from certs.trust import TrustStore
from pyis_common import keyfiles
from pyis_common.errors import Refused
from pyis_common.jobtypes import JOB_TYPES
from pyis_common.protocol import MAX_PID

SESSION_MARGIN_S = 60  # the session hash outlives its token by more than the verifier's leeway
REDIS_TIMEOUT_S = 5.0
ED25519_HINT = "is-authsign keygen --ed25519, or is-ca issue"


class CliError(Exception):
    """A usage or configuration error: one line on stderr, exit 2."""


def load_private_key(path: str) -> Any:
    """The private key in ``path``; every failure is a CliError naming the file, never its bytes."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: cannot read the key file ({exc.strerror or exc})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CliError(f"{path}: the key is encrypted; use an unencrypted key, mode 0600") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CliError(f"{path}: not a PEM private key") from None
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        print(f"warning: {path} has mode {mode:04o}; chmod 600", file=sys.stderr)
    return key


def key_kind(key: object) -> str:
    return type(key).__name__.removeprefix("_").replace("PrivateKey", "")


def connect(url: str) -> redis.Redis:
    try:
        return redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
    except ValueError:
        raise CliError(f"--redis {where(url)}: not a Redis URL") from None


def where(url: str) -> str:
    """``url`` without a password, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def keygen(out: Path, kid: str) -> int:
    """Ed25519 ``<kid>-key.pem`` (0600, never overwritten) and ``<kid>-pubkey.pem``."""
    if not valid_kid(kid):
        raise CliError(f"--kid must match {KID_RE.pattern}")
    out.mkdir(parents=True, exist_ok=True)
    private, public = out / f"{kid}-key.pem", out / f"{kid}-pubkey.pem"
    if (out / f"{kid}.pem").exists():
        raise CliError(f"{out / f'{kid}.pem'} exists: a kid names one key forever; pick a new kid")
    key = Ed25519PrivateKey.generate()
    keyfiles.save_private(key, private)
    public.write_bytes(keyfiles.public_pem(key.public_key()))
    print(f"wrote {private} (0600) and {public}")
    return 0


def sign(args: argparse.Namespace) -> int:
    key = load_private_key(args.key)
    if not isinstance(key, Ed25519PrivateKey):
        raise CliError(
            f"{args.key}: the key is {key_kind(key)}; --jwt needs Ed25519 ({ED25519_HINT})"
        )
    _check_certificate(Path(args.key), args.kid, key)
    unknown = sorted(set(args.scope.split()) - JOB_TYPES)
    if unknown or not args.scope.split():
        raise CliError(f"--scope: {unknown or 'empty'}; job types are {sorted(JOB_TYPES)}")
    if not 0 < len(args.pid) <= MAX_PID or not args.user or min(args.esaf) < 0:
        raise CliError(f"--pid (1..{MAX_PID} chars), --user and --esaf (>= 0) must be valid")
    if args.path and (why := pathclaim.problem(args.path)) is not None:
        raise CliError(f"--path: {why}")
    try:
        claims = {"pid": args.pid, "uid": args.user, "esafs": args.esaf, "aud": args.aud}
        token = tokens.issue(
            key,
            args.kid,
            scope=args.scope,
            lifetime_s=args.lifetime,
            paths=args.path or None,
            **claims,
        )
    except ValueError as exc:
        raise CliError(str(exc).replace("lifetime_s", "--lifetime")) from None
    if args.redis:
        pipe = connect(args.redis).pipeline(transaction=True)  # no moment without an expiry
        pipe.hset(args.pid, "isToken", token)
        pipe.expire(args.pid, args.lifetime + SESSION_MARGIN_S)
        pipe.hget(args.pid, "revoked")
        revoked = pipe.execute()[2]
        if revoked is not None:
            print(f"warning: session {args.pid!r} is revoked: refused", file=sys.stderr)
        print(
            f"stored a token for user {args.user!r}, ESAFs {sorted(set(args.esaf))} in session "
            f"{args.pid!r} (kid {args.kid}, expires in {args.lifetime} s)",
            file=sys.stderr if args.inline else sys.stdout,
        )
    if args.inline or not args.redis:
        print(token)
    return 0


def link(args: argparse.Namespace) -> int:
    """A signed viewer link (authsign/links.py): its session hash written, the URL printed."""
    key = load_private_key(args.key)
    if not isinstance(key, Ed25519PrivateKey):
        raise CliError(f"{args.key}: the key is {key_kind(key)}; a link needs Ed25519")
    _check_certificate(Path(args.key), args.kid, key)
    try:
        made = links.make(
            key,
            args.kid,
            base_url=args.base_url,
            user=args.user,
            esaf=args.esaf,
            path=args.path,
            aud=args.aud,
            ttl_s=args.ttl,
            scope=args.scope,
        )
    except ValueError as exc:
        raise CliError(str(exc).replace("lifetime_s", "--ttl")) from None
    links.store(connect(args.redis), made)
    where = f"link to {args.path!r} in ESAF {args.esaf} for {args.ttl} s, session {made.pid}"
    print(where, file=sys.stderr)
    print(made.url)
    return 0


def _check_certificate(key_path: Path, kid: str, key: Ed25519PrivateKey) -> None:
    """If ``<kid>.pem`` sits beside the key, it must certify this key (catches a wrong --kid)."""
    if not valid_kid(kid):
        raise CliError(f"--kid must match {KID_RE.pattern}")
    cert_path = key_path.with_name(f"{kid}.pem")
    if not cert_path.is_file():
        return
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        raise CliError(f"{cert_path}: not a readable certificate") from None
    if cert.public_key() != key.public_key():
        raise CliError(f"{cert_path} (kid {kid}) does not certify {key_path}; check --kid")


def verify(args: argparse.Namespace) -> int:
    """Check a token as the procmgr would: session hash state, then trust chain and claims."""
    trust = _trust(args)
    token = args.token if args.token is not None else _read_token(args.token_file)
    try:
        if args.redis:
            (stored,) = session(args.redis, args.pid, "isToken")
            if token is None and stored is not None:
                token = stored.decode("utf-8", "replace")
        if token is None:
            raise sessioncheck.no_access_object()
        check = {"pid": args.pid, "aud": args.aud, "job_type": args.type}
        access = tokens.verify(token, trust.key_for, leeway_s=args.leeway, **check)
    except Refused as exc:
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 1
    left = round((access.expires or 0) - time.time())
    bound = f", paths {list(access.paths)}" if access.paths is not None else ""
    print(
        f"ok: user {access.user!r}, ESAFs {sorted(access.allowed_esafs)}{bound}, "
        f"expires in {left} s"
    )
    return 0


def session(url: str, pid: str, *fields: str) -> list[bytes | None]:
    """``fields`` of session hash ``pid``; refuse a revoked or missing one as the procmgr does."""
    pipe = connect(url).pipeline(transaction=False)
    pipe.exists(pid)
    pipe.hmget(pid, *fields, "revoked")
    try:
        exists, values = pipe.execute()
    except redis.exceptions.ResponseError:  # WRONGTYPE: the key is not a session hash
        exists, values = 0, [None]
    sessioncheck.require_live(bool(exists), values[-1])
    return values[:-1]


def _trust(args: argparse.Namespace) -> TrustStore:
    if not Path(args.trust_certs).is_dir():
        raise CliError(f"--trust-certs {args.trust_certs}: not a directory")
    if args.trust_crl is not None and not Path(args.trust_crl).is_file():
        raise CliError(f"--trust-crl {args.trust_crl}: no such file")
    try:
        return TrustStore(
            Path(args.trust_root),
            Path(args.trust_certs),
            Path(args.trust_crl) if args.trust_crl is not None else None,
        )
    except OSError as exc:
        raise CliError(f"--trust-root {args.trust_root}: {exc.strerror or exc}") from None
    except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound) as exc:
        name = type(exc).__name__
        raise CliError(f"--trust-root {args.trust_root}: not a CA root ({name})") from None


def _read_token(path: str | None) -> str | None:
    """The token in ``path`` (``-``: stdin), bounded and stripped; None without a path."""
    if path is None:
        return None
    limit = 4 * tokens.MAX_TOKEN  # tokens.verify refuses a long one; just do not read a disk
    try:
        if path == "-":
            return sys.stdin.read(limit).strip()
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(limit).strip()
    except OSError as exc:
        raise CliError(f"--token-file {path}: {exc.strerror or exc}") from None
