"""The proxy <-> procmgr link is CURVE: only the configured procmgr key gets requests."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import zmq
import zmq.auth

from pyis_common import curve
from tests.support import logs
from tests.support.client import ask

HANDSHAKE_FAILED = "procmgr link handshake failed"  # the proxy's LinkMonitor line


def rogue_dealer(endpoint: str, server_public: Path | None) -> zmq.Socket:
    """A would-be procmgr: plaintext, or CURVE with a key the proxy does not know."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if server_public is not None:
        with tempfile.TemporaryDirectory() as tmp:
            _, secret = curve.make_certificates(Path(tmp), "rogue")
            curve.connect_as_client(sock, str(secret), str(server_public))
    sock.connect(endpoint)
    return sock


@pytest.mark.parametrize("kind", ["plaintext", "unknown key"])
def test_an_unknown_peer_on_the_backend_gets_no_request(site, kind):
    public = None if kind == "plaintext" else site.stack.proxy_public
    proxy_log = site.logs / "proxy.log"
    refused = logs.count(proxy_log, HANDSHAKE_FAILED)
    rogue = rogue_dealer(site.stack.backend, public)
    try:
        # the proxy saw the rogue and refused its handshake: not a rogue that never arrived
        logs.wait_for(proxy_log, HANDSHAKE_FAILED, timeout_s=30, at_least=refused + 1)
        for _ in range(8):  # a DEALER that got in would be handed every other request
            assert (
                ask(site.endpoint, {"pid": "monitor", "type": "status"}, timeout_ms=10000)[0] == b""
            )
        assert not rogue.poll(500, zmq.POLLIN)
    finally:
        rogue.close(0)


def test_the_link_keys_are_not_world_readable(site):
    assert site.stack.procmgr_secret.stat().st_mode & 0o077 == 0
    assert site.stack.proxy_secret.stat().st_mode & 0o077 == 0
    public, secret = zmq.auth.load_certificate(site.stack.procmgr_public)
    assert secret is None and len(public) == 40  # the public file carries no secret
