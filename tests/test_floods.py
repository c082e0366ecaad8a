"""Floods from before any authentication: multipart messages and one session's many requests.

The proxy counts frames and bytes per message while it receives it and forwards nothing of one
over the request limits; a session's worker holds at most its share of the request slots.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from procmgr.__main__ import dev_user
from pyisdev.stack import Stack
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack
from tests.test_link import MIB, reset_peak_rss, rss_kib

SHARE = 3  # session_max_in_flight in the small stack below


def test_a_multipart_flood_never_reaches_the_procmgr(site):
    other = {
        "pid": site.session([site.other_esaf], user=site.other_user),
        "esaf": site.other_esaf,
        "type": "jpeg",
        "fn": "thau_0001.cbf",
        "xsize": 256,
    }
    assert ask(site.endpoint, other)[0] == b""  # its worker is up and the image cached
    procmgr = site.stack.procmgr.pid
    reset_peak_rss(procmgr)
    before = rss_kib(procmgr)
    flood = zmq.Context.instance().socket(zmq.DEALER)
    flood.setsockopt(zmq.LINGER, 0)
    try:
        flood.connect(site.endpoint)
        for delimiter in ([], [b""], []):  # 64 frames of 1 MiB each: every frame is in size
            flood.send_multipart(delimiter + [b"x" * MIB] * 64)
        assert ask(site.endpoint, other, timeout_ms=1000)[0] == b""  # served within 1 s
        replies = []
        for _ in range(3):
            assert flood.poll(30000, zmq.POLLIN), "the flood got no error reply"
            replies.append(flood.recv_multipart())
    finally:
        flood.close(0)
    assert [r[-1].split(b":")[0] for r in replies] == [b"bad_request"] * 3
    assert replies[1][0] == b""  # the one that sent a delimiter gets it back, as a REQ wants
    grown_kib = rss_kib(procmgr, "VmHWM") - before
    assert grown_kib < 16 * 1024, f"the procmgr grew by {grown_kib} KiB"
    assert site.log_text("proxy").count("refused a request of 64 frames") >= 2


@pytest.fixture(scope="module")
def stack(testdata) -> Iterator[Stack]:
    tools = Path(tempfile.mkdtemp(prefix="pyis-indexer-", dir="/tmp"))
    os.chmod(tools, 0o755)  # the worker (nobody) runs the indexer from here
    indexer = tools / "fake_indexer.py"
    shutil.copyfile(Path(__file__).parent / "fake_indexer.py", indexer)
    os.chmod(indexer, 0o755)
    config = (
        f"max_in_flight = {SHARE + 3}\nsession_max_in_flight = {SHARE}\nsession_max_index = 1\n"
        f'request_timeout_s = 60.0\nindex_command = ["/usr/bin/python3", "{indexer}"]'
    )
    try:
        with dev_stack(testdata, config) as stack:
            yield stack
    finally:
        shutil.rmtree(tools, ignore_errors=True)


def job(stack: Stack, esaf: int, **extra) -> dict:
    return {
        "type": "jpeg",
        "pid": stack.sign_session(dev_user(), [esaf]),
        "esaf": esaf,
        "fn": "a.cbf",
        **extra,
    }


def test_one_session_cannot_take_every_request_slot(stack):
    """(user, ESAF) 41 floods; 42 is another session; the server's cap is above one share."""
    assert ask(stack.endpoint, job(stack, 41, xsize=64))[0] == b""
    (pid,) = [w["pid"] for w in stack.status_detail()["workers"] if w["esaf"] == 41]
    os.kill(pid, signal.SIGSTOP)  # its requests stay in flight
    replies: list[list[bytes]] = []
    slow = [job(stack, 41, xsize=70 + i) for i in range(SHARE)]
    threads = [
        threading.Thread(target=lambda j=j: replies.append(ask(stack.endpoint, j))) for j in slow
    ]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while stack.status_detail()["in_flight"] < SHARE:
            assert time.monotonic() < deadline, "the flood never reached the procmgr"
        for i in range(3):  # the flooding session: busy at once, naming its own load
            reply = ask(stack.endpoint, job(stack, 41, xsize=90 + i), timeout_ms=5000)
            assert error_code(reply) == "busy" and b"this session" in reply[0]
        for i in range(SHARE):  # another session is served meanwhile, every time
            assert ask(stack.endpoint, job(stack, 42, xsize=64 + i))[0] == b""
    finally:
        os.kill(pid, signal.SIGKILL)
        for t in threads:
            t.join(30)
    assert sorted(error_code(r) for r in replies) == ["internal"] * SHARE


def test_index_jobs_have_a_small_cap_of_their_own(stack):
    data = stack.workdir / "data"
    shutil.copyfile(data / "a.cbf", data / "wait_0001.cbf")
    os.chmod(data / "wait_0001.cbf", 0o644)
    os.mkfifo(data / "release", 0o666)
    os.chmod(data / "release", 0o666)
    replies: list[list[bytes]] = []
    waiting = job(stack, 43, type="index", fn="wait_0001.cbf")
    runner = threading.Thread(target=lambda: replies.append(ask(stack.endpoint, waiting)))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while not any(w["in_flight"] for w in stack.status_detail()["workers"] if w["esaf"] == 43):
            assert time.monotonic() < deadline, "the index job never reached its worker"
        second = ask(stack.endpoint, job(stack, 43, type="index", fn="a.cbf"), timeout_ms=5000)
        assert error_code(second) == "busy" and b"index jobs" in second[0]
        assert ask(stack.endpoint, job(stack, 43, xsize=64))[0] == b""  # images still served
    finally:
        with open(data / "release", "w") as fifo:
            fifo.write("go")
        runner.join(60)
    assert replies and replies[0][0] == b""
