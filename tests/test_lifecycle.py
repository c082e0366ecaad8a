"""SIGTERM to the procmgr: workers exit, nothing is left running, exit code 0."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from procmgr.__main__ import dev_user
from procmgr.manager import SHUTDOWN_GRACE_S
from tests.conftest import need_root
from tests.support.client import ask
from tests.support.devsite import dev_stack, jpeg_job, started_worker
from tests.support.proctree import alive, children, worker_of


def test_sigterm_stops_procmgr_zygote_and_workers(testdata):
    need_root()
    with dev_stack(testdata) as stack:
        for esaf in (0, 1, 2):  # three workers (one per ESAF)
            pid = stack.sign_session(dev_user(), [esaf])
            assert (
                ask(stack.endpoint, {"type": "jpeg", "pid": pid, "esaf": esaf, "fn": "a.cbf"})[0]
                == b""
            )
        procmgr = stack.procmgr
        zygotes = sorted(children(procmgr.pid))
        assert len(zygotes) == 1
        workers = {worker_of(stack, esaf) for esaf in (0, 1, 2)}
        assert len(workers) == 3 and workers <= children(zygotes[0])
        forked = children(zygotes[0])  # the workers and the zygote's spare
        procmgr.signal(signal.SIGTERM)
        assert procmgr.proc.wait(30) == 0
        for pid in [*zygotes, *forked]:
            assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived the procmgr"


def test_sigterm_gives_a_stuck_request_the_grace_then_exits_anyway(testdata):
    """A worker stopped mid-request (SIGSTOP) holds one request past the shutdown grace: the
    procmgr waits SHUTDOWN_GRACE_S for it, not the request's own (long) deadline, then stops
    the worker it could not drain and exits 0."""
    need_root()
    with dev_stack(testdata, "request_timeout_s = 120.0") as stack:
        worker = started_worker(stack, 5)
        os.kill(worker, signal.SIGSTOP)
        job = jpeg_job(stack, 5)
        replies: list[list[bytes]] = []
        client = threading.Thread(target=lambda: replies.append(ask(stack.endpoint, job)))
        client.start()
        deadline = time.monotonic() + 30
        while stack.status_detail()["in_flight"] < 1:  # the stuck request reached the procmgr
            assert time.monotonic() < deadline, "the request never reached the procmgr"
        t0 = time.monotonic()
        stack.procmgr.signal(signal.SIGTERM)
        assert stack.procmgr.proc.wait(SHUTDOWN_GRACE_S + 30) == 0
        waited = time.monotonic() - t0
        assert SHUTDOWN_GRACE_S - 0.5 <= waited < SHUTDOWN_GRACE_S + 20, waited
        assert not alive(worker), "the stopped worker outlived the procmgr"
        client.join(60)
        assert replies and replies[0][0] != b""  # an answer, never the image it never made
