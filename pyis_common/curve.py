"""CURVE encryption and authentication on the proxy <-> procmgr link.

That link crosses the network from the web host to the image host and carries session ids
and images; the C server sent it in plaintext. With CURVE the proxy is the server (its secret
certificate), it accepts only procmgrs whose public certificates sit in a directory (ZAP, via
pyzmq's authenticator thread), and the procmgr pins the proxy's public key. Certificates are
pyzmq's format (``zmq.auth.create_certificates``): ``NAME.key`` public, ``NAME.key_secret``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # NAME.key, NAME.key_secret


def make_certificates(directory: Path, name: str) -> tuple[Path, Path]:
    """(public, secret) certificate files, ``NAME.key`` 0644 and ``NAME.key_secret`` 0600.

    Made in a private (0700) folder beside them and hard-linked into place, so the secret is
    never readable by others, not for an instant, and an existing file is never replaced."""
    if not KEY_NAME.fullmatch(name):
        raise ValueError(f"key name {name[:80]!r}: letters, digits and ._- only")
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if os.path.lexists(path):
            raise FileExistsError(f"{path} exists: a key pair is never overwritten")
    with tempfile.TemporaryDirectory(dir=directory, prefix=".curve-") as private:
        made_public, made_secret = zmq.auth.create_certificates(private, name)
        os.chmod(made_secret, 0o600)
        os.chmod(made_public, 0o644)
        os.link(made_secret, secret)  # link, unlike rename, fails on a name that exists
        try:
            os.link(made_public, public)
        except OSError:
            secret.unlink()
            raise
    return public, secret


def serve(
    ctx: zmq.Context, sock: zmq.Socket, secret_file: str, clients_dir: str
) -> ThreadAuthenticator:
    """Make ``sock`` a CURVE server that lets in only the keys in ``clients_dir``."""
    if not Path(clients_dir).is_dir():
        raise ValueError(f"curve_clients {clients_dir!r} is not a directory of public keys")
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=clients_dir)
    public, secret = zmq.auth.load_certificate(secret_file)
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key")
    sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True
    return auth


def connect_as_client(sock: zmq.Socket, secret_file: str, server_public_file: str) -> None:
    """Before connect: our own certificate, and the proxy's public key pinned."""
    public, secret = zmq.auth.load_certificate(secret_file)
    server, _ = zmq.auth.load_certificate(server_public_file)
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key")
    sock.curve_secretkey, sock.curve_publickey, sock.curve_serverkey = secret, public, server
