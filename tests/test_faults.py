"""Exactly one reply when workers stall, die or pile up; other users are never held up."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procmgr.__main__ import dev_user
from pyisdev import procs
from pyisdev.stack import Stack
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack

TIMEOUT_S = 2.0  # a short request deadline, so that stalls are answered quickly


@pytest.fixture(scope="module")
def stack(testdata) -> Iterator[Stack]:
    with dev_stack(testdata, f"request_timeout_s = {TIMEOUT_S}\nmax_in_flight = 3") as stack:
        yield stack


def job(stack: Stack, esaf: int, **extra) -> dict:
    return {
        "pid": stack.sign_session(dev_user(), [esaf]),
        "esaf": esaf,
        "type": "jpeg",
        "fn": "a.cbf",
        "xsize": 128,
        **extra,
    }


def status(stack: Stack) -> dict:
    return stack.status_detail()


def worker_pid(stack: Stack, esaf: int) -> int:
    assert ask(stack.endpoint, job(stack, esaf))[0] == b""
    (pid,) = [w["pid"] for w in status(stack)["workers"] if w["esaf"] == esaf]
    return pid


def in_background(stack: Stack, jobs: list[dict]) -> tuple[list, list[threading.Thread]]:
    replies: list[list[bytes]] = []
    threads = [
        threading.Thread(target=lambda j=j: replies.append(ask(stack.endpoint, j))) for j in jobs
    ]
    for t in threads:
        t.start()
    return replies, threads


def wait_in_flight(stack: Stack, n: int) -> None:
    """Until the procmgr holds n requests (a readiness condition, with a deadline)."""
    deadline = time.monotonic() + 10
    while status(stack)["in_flight"] < n:
        assert time.monotonic() < deadline, "requests never reached the procmgr"


def test_stalled_worker_gets_timeout_and_is_replaced(stack):
    pid = worker_pid(stack, 11)
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    reply = ask(stack.endpoint, job(stack, 11))
    assert error_code(reply) == "timeout"
    assert time.monotonic() - t0 >= TIMEOUT_S - 0.1  # the deadline, not an early give-up
    fresh = ask(stack.endpoint, job(stack, 11))
    assert fresh[0] == b""
    assert worker_pid(stack, 11) != pid


def test_worker_killed_mid_request_answers_internal_and_respawns(stack):
    pid = worker_pid(stack, 12)
    os.kill(pid, signal.SIGSTOP)  # hold the request inside the worker
    replies, threads = in_background(stack, [job(stack, 12)])
    wait_in_flight(stack, 1)
    os.kill(pid, signal.SIGKILL)
    threads[0].join(30)
    assert error_code(replies[0]) == "internal"
    assert ask(stack.endpoint, job(stack, 12))[0] == b""
    assert worker_pid(stack, 12) != pid


def test_overload_answers_busy_and_every_request_gets_one_reply(stack):
    pid = worker_pid(stack, 13)
    os.kill(pid, signal.SIGSTOP)
    replies, threads = in_background(stack, [job(stack, 13, xsize=100 + i) for i in range(3)])
    wait_in_flight(stack, 3)
    assert error_code(ask(stack.endpoint, job(stack, 14))) == "busy"
    os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join(30)
    assert sorted(error_code(r) for r in replies) == ["internal"] * 3


def test_a_stalled_user_does_not_hold_up_another(stack):
    pid = worker_pid(stack, 15)
    os.kill(pid, signal.SIGSTOP)
    replies, threads = in_background(stack, [job(stack, 15)])
    wait_in_flight(stack, 1)
    assert ask(stack.endpoint, job(stack, 16))[0] == b""
    assert status(stack)["in_flight"] == 1  # answered while the other is still stuck
    os.kill(pid, signal.SIGKILL)
    threads[0].join(30)
    assert error_code(replies[0]) == "internal"


def test_a_crashing_worker_is_backed_off_not_respawned_in_a_storm(stack):
    for _ in range(4):  # worker_max_crashes is 3
        pid = worker_pid(stack, 17)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(w["pid"] == pid for w in status(stack)["workers"]):
            assert time.monotonic() < deadline, "the procmgr did not notice the crash"
    reply = ask(stack.endpoint, job(stack, 17))
    assert error_code(reply) == "busy" and "try again" in reply[0].decode()
    assert "keeps crashing" in (Path(stack.workdir) / "procmgr.log").read_text()


def test_a_dead_session_store_answers_busy_quickly_and_recovers(testdata):
    with dev_stack(testdata) as stack:
        job = {
            "pid": stack.sign_session(dev_user(), [0]),
            "type": "jpeg",
            "fn": "a.cbf",
            "xsize": 64,
        }
        assert ask(stack.endpoint, job)[0] == b""
        port = stack.redis_port
        stack.redis_proc.stop()
        stack.procs.remove(stack.redis_proc)
        for _ in range(5):  # one reply each, none waits on the dead store for long
            reply = ask(stack.endpoint, job, timeout_ms=5000)
            assert error_code(reply) == "busy" and b"store is unavailable" in reply[0]
        assert ask(stack.endpoint, {"pid": "monitor", "type": "status"})[0] == b""
        stack.redis_proc, _ = procs.redis_server(stack.workdir, port=port)
        stack.procs.append(stack.redis_proc)
        job["pid"] = stack.sign_session(dev_user(), [0])  # the new store starts empty
        deadline = time.monotonic() + 20
        while ask(stack.endpoint, job)[0] != b"":  # the breaker closes after a second
            assert time.monotonic() < deadline, "the procmgr never used the store again"
