"""The proxy's control socket (PAUSE, TERMINATE...) is out of reach of every other local user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import zmq

from tests.conftest import need_root
from tests.support.accounts import Accounts
from tests.support.devsite import dev_stack

# run as the throwaway account, with the system's python and the stdlib only
TRY_CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
    print("connected")
except PermissionError:
    print("EACCES")
"""


def statistics(endpoint: str) -> dict:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send_string("STATISTICS")
        assert sock.poll(10000), "the proxy did not answer its own user"
        return json.loads(sock.recv_string())
    finally:
        sock.close(0)


def test_another_local_user_cannot_reach_the_control_socket(testdata):
    need_root()
    with dev_stack(testdata) as stack:
        assert stack.control.startswith("ipc://")
        path = Path(stack.control.removeprefix("ipc://"))
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        base = Path(tempfile.mkdtemp(prefix="pyis-ctl-", dir="/tmp"))
        accounts = Accounts.create(base / "homes")
        try:
            pw = pwd.getpwnam(accounts.user(f"pyisc{accounts.tag}"))
            tried = subprocess.run(
                ["/usr/bin/python3", "-I", "-c", TRY_CONNECT, str(path)],
                user=pw.pw_uid,
                group=pw.pw_gid,
                extra_groups=[],
                capture_output=True,
                text=True,
                timeout=60,
                cwd="/",
            )
        finally:
            accounts.remove()
            shutil.rmtree(base, ignore_errors=True)
        assert tried.stdout.strip() == "EACCES", tried.stdout + tried.stderr
        assert statistics(stack.control)["paused"] is False  # its own user still can


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:*", "ipc://@pyis-control", "open"])
def test_a_control_endpoint_other_users_could_reach_is_refused_at_start(tmp_path, endpoint):
    if endpoint == "open":
        (tmp_path / "run").mkdir(mode=0o755)
        os.chmod(tmp_path / "run", 0o755)
        endpoint = f"ipc://{tmp_path / 'run' / 'control'}"
    any_port = "tcp://127.0.0.1:*"
    result = subprocess.run(
        [sys.executable, "-m", "is_proxy", "--frontend", any_port, "--backend", any_port]
        + ["--control", endpoint],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "control" in result.stderr and "READY" not in result.stdout


def test_the_control_socket_is_off_unless_configured():
    any_port = "tcp://127.0.0.1:*"
    proc = subprocess.Popen(
        [sys.executable, "-m", "is_proxy", "--frontend", any_port, "--backend", any_port],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("READY") and "control=" not in ready
    finally:
        proc.terminate()
        proc.wait(20)
