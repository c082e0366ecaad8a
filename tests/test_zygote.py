"""What a worker gets from the zygote (nothing of the procmgr's), and what the procmgr does
when the zygote cannot fork or dies."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procmgr.__main__ import dev_user
from procmgr.manager import EXIT_HALT
from pyisdev.stack import Stack
from tests.conftest import need_root
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack, jpeg_job, started_worker
from tests.support.hijack import steal_fd
from tests.support.proctree import status_of, zygote_of

MARKER = "PYIS_H11PROC_PROCMGR_ONLY"  # in the procmgr's environment, never a worker's
PIDS_CGROUPS = Path("/sys/fs/cgroup/pids")  # cgroup v1; systemd's TasksMax= is this limit
BACKOFF_S = 0.5


@pytest.fixture(scope="module")
def stack(testdata) -> Iterator[Stack]:
    need_root()
    os.environ[MARKER] = "secret-ish"
    try:
        with dev_stack(testdata, f"worker_backoff_s = {BACKOFF_S}") as stack:
            yield stack
    finally:
        del os.environ[MARKER]


def fd_targets(pid: int) -> dict[int, str]:
    fds = Path(f"/proc/{pid}/fd")
    return {int(p.name): os.readlink(p) for p in fds.iterdir()}


def test_a_worker_gets_a_minimal_environment(stack):
    worker = started_worker(stack, 41)
    assert MARKER in Path(f"/proc/{stack.procmgr.pid}/environ").read_bytes().decode()
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
    assert names <= {"PATH", "LANG", "PYTHONPATH", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"}


def test_a_worker_holds_no_descriptor_of_the_zygote_or_procmgr(stack):
    worker = started_worker(stack, 42)
    mine, zygote = fd_targets(worker), fd_targets(zygote_of(stack.procmgr.pid))
    procmgr = fd_targets(stack.procmgr.pid)
    assert mine[0] == "/dev/null"
    assert mine[1] == mine[2] and mine[2].startswith("pipe:")  # its own stderr pipe
    assert mine[2] != procmgr[2] and mine[2] in procmgr.values()  # the procmgr reads it
    rest = {target for fd, target in mine.items() if fd not in (1, 2)}
    inherited = (rest | {mine[2]}) & set(zygote.values()) | rest & set(procmgr.values())
    inherited -= {"/dev/null"}
    assert not inherited  # the zygote's channel and signal socketpair, the procmgr's log


def test_a_worker_cannot_gain_privileges_by_exec(stack):
    worker = started_worker(stack, 43)
    assert status_of(worker)["NoNewPrivs"] == "1"


def test_worker_stderr_is_logged_by_the_procmgr_within_a_bound(stack):
    worker = started_worker(stack, 44)
    log = stack.workdir / "procmgr.log"
    size_before = log.stat().st_size
    stderr = steal_fd(worker, 2)  # write as the worker would
    try:
        os.write(stderr, b"hello from \x1b[31mthe worker\n")
        for _ in range(64):  # 4 MiB: a flood the journal must not receive
            os.write(stderr, (b"A" * 1023 + b"\n") * 64)
    finally:
        os.close(stderr)
    deadline = time.monotonic() + 30
    while "dropping the rest" not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the procmgr did not read the worker's stderr"
    text = log.read_text(errors="replace")
    assert "stderr: hello from ?[31mthe worker" in text and "\x1b" not in text
    assert log.stat().st_size - size_before < 64 << 10


def test_a_failed_fork_answers_busy_at_once_and_the_server_stays_up(stack):
    served = started_worker(stack, 45)
    zygote = zygote_of(stack.procmgr.pid)
    if not (PIDS_CGROUPS / "cgroup.procs").exists():
        pytest.fail(f"the pids cgroup controller is not mounted at {PIDS_CGROUPS}")
    group = PIDS_CGROUPS / f"pyis-test-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cgroup.procs").write_text(str(zygote))
        (group / "pids.max").write_text("1")  # the zygote's own task, if that: no fork
        reply = ask(stack.endpoint, jpeg_job(stack, 46))
        assert error_code(reply) == "busy", reply
        assert "fork failed" in (stack.workdir / "procmgr.log").read_text()
        assert ask(stack.endpoint, jpeg_job(stack, 45))[0] == b""  # running sessions unaffected
        assert status_of(served)["State"][0] in "RS"
        (group / "pids.max").write_text("max")
        deadline = time.monotonic() + 30
        while ask(stack.endpoint, jpeg_job(stack, 46))[0] != b"":  # once the back-off has passed
            assert time.monotonic() < deadline, "the session never got a worker"
    finally:
        for pid in (group / "cgroup.procs").read_text().split():  # the zygote, its new child
            (PIDS_CGROUPS / "cgroup.procs").write_text(pid)
        group.rmdir()


def test_the_procmgr_exits_non_zero_when_the_zygote_dies(testdata):
    need_root()
    with dev_stack(testdata) as stack:
        pid = stack.sign_session(dev_user(), [0])
        assert ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": "a.cbf"})[0] == b""
        os.kill(zygote_of(stack.procmgr.pid), signal.SIGKILL)
        assert stack.procmgr.proc.wait(60) == EXIT_HALT
        assert "the zygote died" in (stack.workdir / "procmgr.log").read_text()
