"""CURVE encryption and authentication on the proxy <-> procmgr link.

That link crosses the network from the web host to the image host and carries session ids
and images; the C server sent it in plaintext. With CURVE the proxy is the server (its secret
certificate), it accepts only procmgrs whose public certificates sit in a directory (ZAP, via
pyzmq's authenticator thread), and the procmgr pins the proxy's public key. Certificates are
pyzmq's format (``zmq.auth.create_certificates``): ``NAME.key`` public, ``NAME.key_secret``.
"""

from __future__ import annotations

from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


def make_certificates(directory: Path, name: str) -> tuple[Path, Path]:
    """(public, secret) certificate files; the secret one is written 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(directory, name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


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
