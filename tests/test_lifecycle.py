"""SIGTERM to the procmgr: workers exit, nothing is left running, exit code 0."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

from pyis_common.devstack import Stack
from tests.conftest import CBF, need_root
from tests.support.client import ask
from tests.test_privsep import _children


def test_sigterm_stops_procmgr_zygote_and_workers(site, testdata):
    need_root()
    base = Path(tempfile.mkdtemp(prefix="pyis-life-", dir="/tmp"))
    os.chmod(base, 0o755)
    data = base / "data"
    data.mkdir()
    shutil.copyfile(testdata / CBF, data / "a.cbf")
    os.chmod(data / "a.cbf", 0o644)
    stack = Stack(base, ["--dev", str(data)]).start()
    try:
        for esaf in (0, 1, 2):  # three workers (one per ESAF)
            pid = stack.sign_session("nobody", [esaf])
            assert ask(stack.endpoint, {"pid": pid, "esaf": esaf, "fn": "a.cbf"})[0] == b""
        procmgr = stack.procmgr
        zygotes = _children(procmgr.pid)
        assert len(zygotes) == 1
        workers = _children(zygotes[0])
        assert len(workers) == 3
        procmgr.signal(signal.SIGTERM)
        assert procmgr.proc.wait(30) == 0
        for pid in [*zygotes, *workers]:
            assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived the procmgr"
    finally:
        stack.stop()
        shutil.rmtree(base, ignore_errors=True)
