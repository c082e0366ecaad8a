"""What a worker gets from the zygote (nothing of the procmgr's), from a spare as from a fork,
and what the procmgr does when the zygote cannot fork, loses its spare or dies."""

from __future__ import annotations

import os
import pwd
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
from tests.support.proctree import SPARE, alive, comm, ready_spare, status_of, zygote_of

MARKER = "PYIS_H11PROC_PROCMGR_ONLY"  # in the procmgr's environment, never a worker's
# all a worker may see: spelled out, so a name added to zygote_environment fails here first
WORKER_ENVIRONMENT = {"PATH", "LANG", "PYTHONPATH", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"}
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
    """What each open descriptor of ``pid`` names; one closed while we list is left out (the
    procmgr's threads open and close connections of their own at any time)."""
    targets = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets[int(fd.name)] = os.readlink(fd)
        except FileNotFoundError:
            continue
    return targets


def test_a_worker_gets_a_minimal_environment(stack):
    worker = started_worker(stack, 41)
    assert MARKER in Path(f"/proc/{stack.procmgr.pid}/environ").read_bytes().decode()
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
    assert names <= WORKER_ENVIRONMENT


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
        # the spare, forked before (it stays outside the group), may serve one new session
        replies = {esaf: ask(stack.endpoint, jpeg_job(stack, esaf)) for esaf in (46, 47)}
        busy = [e for e, reply in replies.items() if reply[0] and error_code(reply) == "busy"]
        assert busy and all(replies[e][0] == b"" for e in replies if e not in busy), replies
        assert "fork failed" in (stack.workdir / "procmgr.log").read_text()
        assert ask(stack.endpoint, jpeg_job(stack, 45))[0] == b""  # running sessions unaffected
        assert status_of(served)["State"][0] in "RS"
        (group / "pids.max").write_text("max")
        deadline = time.monotonic() + 30
        for esaf in busy:  # once the back-off has passed
            while ask(stack.endpoint, jpeg_job(stack, esaf))[0] != b"":
                assert time.monotonic() < deadline, "the session never got a worker"
        ready_spare(zygote)  # and the spare the zygote could not fork meanwhile is back
    finally:
        for pid in (group / "cgroup.procs").read_text().split():  # the zygote, its new child
            (PIDS_CGROUPS / "cgroup.procs").write_text(pid)
        group.rmdir()


def test_a_spare_becomes_exactly_the_users_worker_with_nothing_left_over(stack):
    """The spare waited as root, forked and rehearsed before any identity existed; the new
    session's worker is that process, now the user with the user's group alone, no
    capability, no way back, the zygote's minimal environment and only its own descriptors."""
    zygote = zygote_of(stack.procmgr.pid)
    spare = ready_spare(zygote)
    waiting = status_of(spare)
    assert waiting["Uid"].split() == ["0"] * 4
    # rehearsed on threads, all joined: the drop runs single-threaded; no_new_privs came first
    assert waiting["Threads"] == "1" and waiting["NoNewPrivs"] == "1"
    zygote_fds, procmgr_fds = fd_targets(zygote), fd_targets(stack.procmgr.pid)
    worker = started_worker(stack, 48)
    assert worker == spare and comm(worker) != SPARE
    user = pwd.getpwnam(dev_user())
    status = status_of(worker)
    assert status["Uid"].split() == [str(user.pw_uid)] * 4
    assert status["Gid"].split() == [str(user.pw_gid)] * 4
    assert status["Groups"] == ""
    assert status["CapEff"] == status["CapPrm"] == "0" * 16
    assert status["NoNewPrivs"] == "1"
    mine = fd_targets(worker)
    assert mine[0] == "/dev/null" and mine[1] == mine[2] and mine[2].startswith("pipe:")
    assert mine[3].startswith("socket:")  # its channel to the procmgr
    later = {target for fd, target in mine.items() if fd > 3}  # its follower's wake-up pipe,
    assert all(t.startswith(("pipe:", "socket:")) for t in later), mine  # a tier-2 connection
    assert not ({mine[3], *later} & {*zygote_fds.values(), *procmgr_fds.values()})
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
    assert names <= WORKER_ENVIRONMENT
    assert os.readlink(f"/proc/{worker}/cwd") == str(stack.workdir / "data")


def test_a_zygote_whose_spare_dies_still_serves_new_sessions(stack):
    zygote = zygote_of(stack.procmgr.pid)
    spare = ready_spare(zygote)
    os.kill(spare, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while alive(spare):  # its end of the zygote's socketpair is closed once it has exited
        assert time.monotonic() < deadline, "the spare outlived SIGKILL"
    worker = started_worker(stack, 49)  # the zygote replaces it only after a delay: a fork
    assert worker != spare
    assert status_of(worker)["Uid"].split()[0] == str(pwd.getpwnam(dev_user()).pw_uid)
    assert ready_spare(zygote) != spare  # replaced
    assert f"worker pid {spare} exited" not in (stack.workdir / "procmgr.log").read_text()


def test_the_procmgr_exits_non_zero_when_the_zygote_dies(testdata):
    need_root()
    with dev_stack(testdata) as stack:
        pid = stack.sign_session(dev_user(), [0])
        assert ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": "a.cbf"})[0] == b""
        os.kill(zygote_of(stack.procmgr.pid), signal.SIGKILL)
        assert stack.procmgr.proc.wait(60) == EXIT_HALT
        assert "the zygote died" in (stack.workdir / "procmgr.log").read_text()
