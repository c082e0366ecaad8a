"""``is-cli``'s Lazy Pirate: nothing listening exits 20 after the retries, and a proxy that
swallows a request and then restarts costs retries, not a hang."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from procmgr.__main__ import dev_user
from pyisdev import procs
from pyisdev.stack import Stack
from tests.conftest import REPO
from tests.support.clirun import (
    CLI,
    RUN_TIMEOUT_S,
    WAIT_S,
    cli,
    cli_env,
    decoded,
)
from tests.support.devsite import dev_stack

# -- the Lazy Pirate ---------------------------------------------------------------------


def test_nothing_listening_exits_20_after_the_retries(home, tmp_path):
    endpoint = f"ipc://{tmp_path}/nobody"
    t0 = time.monotonic()
    args = ["status", "--endpoint", endpoint, "--timeout", "0.3", "--retries", "3"]
    done = cli(args, home)
    assert done.returncode == 20
    assert time.monotonic() - t0 >= 0.9
    err = done.stderr.decode()
    assert err.count("retrying on a new socket") == 2
    assert f"no reply from {endpoint} after 3 tries of 0.3 s each" in err


@pytest.fixture
def own_stack(testdata: Path) -> Iterator[Stack]:
    """A stack of its own: this test stops and replaces its proxy."""
    with dev_stack(testdata) as stack:
        yield stack


def control(stack: Stack, command: str) -> str:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(stack.control)
        sock.send_string(command)
        assert sock.poll(int(WAIT_S * 1000)), f"the proxy did not answer {command}"
        return sock.recv_string()
    finally:
        sock.close(linger=0)


def test_a_lost_request_and_a_restarted_proxy_cost_retries_not_a_hang(own_stack, home, tmp_path):
    out = tmp_path / "a.jpg"
    pid = own_stack.sign_session(dev_user(), [21])
    args = [*CLI, "jpeg", "a.cbf", "--endpoint", own_stack.endpoint, "--pid", pid]
    args += ["--esaf", "21", "--xsize", "64", "-o", str(out)]
    warm = subprocess.run(args, capture_output=True, env=cli_env(home), cwd=REPO, timeout=60)
    assert warm.returncode == 0, warm.stderr  # worker started and image cached: 1 s is plenty
    # a paused proxy takes the request and never forwards it: the first try is lost for good
    assert control(own_stack, "PAUSE") == "OK"
    retrying = procs.Proc(
        [*args, "--timeout", "1", "--retries", "10"],
        lambda line: "retrying on a new socket" in line,
        stderr=subprocess.STDOUT,
        env=cli_env(home),
    )
    replacement = None
    try:
        retrying.wait_ready(WAIT_S)
        assert control(own_stack, "TERMINATE") == "OK"
        assert own_stack.proxy.proc.wait(WAIT_S) == 0
        replacement = procs.Proc(
            [
                *procs.pyis_command("is_proxy"),
                "--frontend",
                own_stack.endpoint,
                "--backend",
                own_stack.backend,
                *own_stack.proxy_curve_args(),
            ],
            lambda line: line.startswith("READY"),
        )
        replacement.wait_ready()
        assert retrying.proc.wait(RUN_TIMEOUT_S) == 0, "\n".join(retrying.lines)
    finally:
        retrying.stop()
        if replacement is not None:
            replacement.stop()
    assert decoded(out.read_bytes()).width == 64
    assert sum("retrying on a new socket" in line for line in retrying.lines) >= 1


# -- what a C server or a broken one answers: a REP socket in its place ------------------
