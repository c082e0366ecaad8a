"""SIGTERM to the procmgr: workers exit, nothing is left running, exit code 0."""

from __future__ import annotations

import signal
from pathlib import Path

from procmgr.__main__ import dev_user
from tests.conftest import need_root
from tests.support.client import ask
from tests.support.devsite import dev_stack
from tests.support.proctree import children


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
        workers = children(zygotes[0])
        assert len(workers) == 3
        procmgr.signal(signal.SIGTERM)
        assert procmgr.proc.wait(30) == 0
        for pid in [*zygotes, *workers]:
            assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived the procmgr"
