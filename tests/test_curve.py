"""The proxy <-> procmgr link is CURVE: only the configured procmgr key gets requests."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import zmq
import zmq.auth

from pyis_common import curve
from pyisdev import procs
from pyisdev.stack import Stack
from tests.support import logs
from tests.support.client import ask
from tests.support.devsite import dev_stack, jpeg_job

REPO = Path(__file__).resolve().parents[1]
ANY_PORT = "tcp://127.0.0.1:*"
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


def is_ca(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "certs", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0),  # the secret's mode must not depend on the umask
    )


def test_is_ca_curve_keys_writes_a_pair_with_a_private_secret(tmp_path):
    out = tmp_path / "curve"
    run = is_ca("curve-keys", "--out", str(out), "--name", "procmgr")
    assert run.returncode == 0, run.stderr
    public, secret = out / "procmgr.key", out / "procmgr.key_secret"
    assert run.stdout.split() == [str(public), str(secret)]  # file names, never key material
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    public_key, none = zmq.auth.load_certificate(public)
    same_public, secret_key = zmq.auth.load_certificate(secret)
    assert none is None and secret_key is not None and same_public == public_key
    assert secret_key.decode() not in run.stdout + run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["procmgr.key", "procmgr.key_secret"]


def test_is_ca_curve_keys_never_overwrites_a_pair(tmp_path):
    out = tmp_path / "curve"
    assert is_ca("curve-keys", "--out", str(out), "--name", "proxy").returncode == 0
    before = (out / "proxy.key_secret").read_bytes()
    again = is_ca("curve-keys", "--out", str(out), "--name", "proxy")
    assert again.returncode == 1 and "never overwritten" in again.stderr
    assert (out / "proxy.key_secret").read_bytes() == before


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "x" * 65])
def test_is_ca_curve_keys_takes_a_plain_name(tmp_path, name):
    run = is_ca("curve-keys", "--out", str(tmp_path / "curve"), "--name", name)
    assert run.returncode == 1 and "letters, digits" in run.stderr
    assert not (tmp_path / "escape.key").exists()


def impostor_proxy(stack: Stack) -> dict[str, str]:
    """A real is-proxy with a key of its own, admitting the stack's procmgr key: what an
    attacker who took over the web host's address (not its secret) would run."""
    public, secret = curve.make_certificates(stack.workdir / "impostor", "impostor")
    argv = [*procs.pyis_command("is_proxy"), "--frontend", ANY_PORT, "--backend", ANY_PORT]
    argv += ["--curve-secret", str(secret), "--curve-clients", str(stack.curve_clients)]
    proc = procs.Proc(argv, lambda line: line.startswith("READY"))
    stack.procs.append(proc)  # stopped with the stack
    proc.wait_ready()
    return proc.fields() | {"public": str(public)}


def test_the_procmgr_talks_only_to_the_proxy_whose_key_it_pinned(testdata):
    with dev_stack(testdata) as stack:
        impostor = impostor_proxy(stack)
        stack.backend = impostor["backend"]  # the next procmgrs connect there
        stack.start_procmgr(name="pinned")  # pins the real proxy's key
        logs.wait_for(stack.workdir / "pinned.log", "proxy link handshake failed", 30)
        job = jpeg_job(stack, 3)
        with pytest.raises(TimeoutError):  # no image host behind the impostor
            ask(impostor["frontend"], job, timeout_ms=5000)
        # the control: the same procmgr pinning the impostor's key is served by it
        stack.proxy_public = Path(impostor["public"])
        stack.start_procmgr(name="trusting")
        logs.wait_for(stack.workdir / "trusting.log", "proxy link up", 30)
        assert ask(impostor["frontend"], jpeg_job(stack, 3))[0] == b""
        assert logs.count(stack.workdir / "pinned.log", "proxy link up") == 0
