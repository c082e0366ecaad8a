"""Worker lifecycle at scale, the proxy's control socket, and a graceful SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import zmq

from procmgr.__main__ import dev_user
from pyisdev.stack import Stack
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack
from tests.support.proctree import alive

SESSIONS = 130  # the C server's process table held 128


@pytest.fixture
def stack(testdata) -> Iterator[Stack]:
    # idle 15 s: 130 worker starts take 5-7 s on a loaded 2-core box, and none may idle out first
    with dev_stack(testdata, "worker_idle_s = 15.0\nmax_in_flight = 512") as stack:
        yield stack


def status(stack: Stack) -> dict:
    return stack.status_detail()


def control(stack: Stack, command: str) -> str:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(stack.control)
    try:
        sock.send_string(command)
        proxy_log = stack.workdir / "proxy.log"
        assert sock.poll(10000), f"no answer to {command}; proxy: {proxy_log.read_text()[-2000:]}"
        return sock.recv_string()
    finally:
        sock.close(0)


def test_more_sessions_than_the_c_server_could_hold_then_idle_workers_stop(stack):
    user = dev_user()

    def one(esaf: int) -> bytes:
        pid = stack.sign_session(user, [esaf])
        return ask(stack.endpoint, {"pid": pid, "esaf": esaf, "type": "meta", "fn": "a.cbf"})[0]

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(1, SESSIONS + 1))) == {b""}
    workers = status(stack)["workers"]
    assert len(workers) >= SESSIONS - 20  # a few of the first may have gone idle already
    pids = [w["pid"] for w in workers]
    deadline = time.monotonic() + 60
    while status(stack)["workers"]:
        assert time.monotonic() < deadline, "idle workers were not stopped"
    while running := [p for p in pids if alive(p)]:  # they exit on EOF of their channel
        assert time.monotonic() < deadline, f"idle workers still running: {running[:5]}"


def test_proxy_control_pause_resume_statistics(stack):
    pid = stack.sign_session(dev_user(), [0])
    assert ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": "a.cbf", "xsize": 64})[0] == b""
    stats = json.loads(control(stack, "STATISTICS"))
    assert stats["requests"] >= 1 and stats["replies"] >= 1 and not stats["paused"]
    assert control(stack, "PAUSE") == "OK"
    replies: list[list[bytes]] = []
    waiter = threading.Thread(
        target=lambda: replies.append(
            ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": "a.cbf"})
        )
    )
    waiter.start()
    waiter.join(1.0)
    assert waiter.is_alive() and not replies  # held at the proxy while paused
    assert json.loads(control(stack, "STATISTICS"))["paused"]
    assert control(stack, "RESUME") == "OK"
    waiter.join(30)
    assert replies and replies[0][0] == b""
    assert control(stack, "NONSENSE").startswith("ERROR")


def test_proxy_terminate_exits_cleanly(stack):
    assert control(stack, "TERMINATE") == "OK"
    assert stack.proxy.proc.wait(20) == 0


def test_sigterm_finishes_in_flight_requests_and_refuses_new_ones(testdata):
    with dev_stack(testdata) as stack:
        pid = stack.sign_session(dev_user(), [0])
        assert ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": "a.cbf"})[0] == b""
        (worker,) = [w["pid"] for w in status(stack)["workers"]]
        os.kill(worker, signal.SIGSTOP)  # hold one request in flight
        replies: list[list[bytes]] = []
        held = threading.Thread(
            target=lambda: replies.append(
                ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": "a.cbf", "xsize": 300})
            )
        )
        held.start()
        deadline = time.monotonic() + 10
        while status(stack)["in_flight"] < 1:
            assert time.monotonic() < deadline
        stack.procmgr.signal(signal.SIGTERM)
        log = stack.workdir / "procmgr.log"
        while "shutting down (SIGTERM)" not in log.read_text():  # the signal is handled
            assert time.monotonic() < deadline + 20
        late = ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": "a.cbf"})
        assert error_code(late) == "busy" and b"shutting down" in late[0]
        os.kill(worker, signal.SIGCONT)
        held.join(30)
        assert replies and replies[0][0] == b"" and len(replies[0]) == 4
        assert stack.procmgr.proc.wait(30) == 0
        assert not Path(f"/proc/{worker}").exists()
