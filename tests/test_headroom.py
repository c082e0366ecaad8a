"""The heap's headroom (worker/headroom.py): once a worker's heap in use has grown, a refill
leaves free heap at its top with its pages already faulted in, so the next buffers cost no
page faults; a worker that only answered small jobs is left as it is (no thread woken); 0
turns it off; the refill runs on a thread of its own at nice 19.

Each case runs in a fresh interpreter (its own heap, the workers' malloc tuning), allocating
with the C library's malloc (numpy would ask for huge pages, which fault 2 MiB at a time).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from procmgr.__main__ import dev_user
from tests.support.client import ask
from tests.support.devsite import dev_stack
from tests.test_hosts import wait_until
from worker import headroom

REPO_ROOT = __file__.rsplit("/tests/", 1)[0]

# each script's start: the workers' malloc tuning, and buffers written as a job's kept ones are
PRELUDE = textwrap.dedent(
    """
    import ctypes, json, os, resource, sys, time
    from worker import headroom, warmup
    assert warmup.tune_malloc()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    MB = 1 << 20
    room = headroom.HEADROOM

    def touched(n, size=2 * MB):  # n blocks of ``size`` written
        blocks = [libc.malloc(size) for _ in range(n)]
        for b in blocks:
            ctypes.memset(b, 1, size)
        return blocks

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    """
)


def _python(script: str, *args: object) -> dict:
    """What ``script`` (after PRELUDE) prints as JSON, in a fresh interpreter."""
    code = PRELUDE + textwrap.dedent(script)
    argv = [sys.executable, "-c", code, *map(str, args)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    return json.loads(done.stdout)


NEXT_BUFFERS = """
    mode, grown_mb = sys.argv[1], int(sys.argv[2])
    on = room.configure(0 if mode == "off" else 32 * MB)
    kept = touched(grown_mb // 2)  # what the LRU kept of the jobs so far
    refill = room.refill if mode != "never" else (lambda: 0)
    refilled = refill()
    again = refill()  # nothing grew since: nothing to do
    before = faults()
    kept += touched(8)  # the next job's 16 MiB
    print(json.dumps({"on": on, "refilled": refilled, "again": again,
                      "faults": faults() - before}))
    """


def _run(mode: str, grown_mb: int) -> dict:
    return _python(NEXT_BUFFERS, mode, grown_mb)


def test_after_a_refill_the_next_buffers_are_written_into_pages_already_faulted_in() -> None:
    without = _run("never", 16)
    assert without["faults"] >= 3000, without  # 16 MiB of new 4 KiB pages
    refilled = _run("on", 16)
    assert refilled["on"] and refilled["refilled"] >= 16 << 20, refilled
    assert refilled["again"] == 0, refilled  # the pages it did are not walked again
    assert refilled["faults"] < 100, refilled


def test_a_heap_that_did_not_grow_is_not_refilled() -> None:
    small = _run("on", 2)  # a meta job's worth: under headroom.GROWTH
    assert small["refilled"] == 0, small
    assert small["faults"] >= 3000, small


def test_zero_turns_the_headroom_off() -> None:
    off = _run("off", 16)
    assert off == off | {"on": False, "refilled": 0, "again": 0}, off
    assert off["faults"] >= 3000, off


JOB_END = """
    room.configure(32 * MB)
    small = touched(1, MB)  # a small job's worth
    room.job_began()
    room.job_ended()
    woke_for_small = room._thread is not None
    kept = touched(8)  # a frame's worth kept
    room.job_began()
    room.job_ended()
    deadline = time.monotonic() + 10
    while room.refilled == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the thread's own counter, up to a deadline
    nice = os.getpriority(os.PRIO_PROCESS, room._thread.native_id)
    print(json.dumps({"woke_for_small": woke_for_small, "refilled": room.refilled,
                      "nice": nice, "main_nice": os.getpriority(os.PRIO_PROCESS, 0)}))
    """


def test_a_job_s_end_refills_on_a_thread_at_nice_19_and_a_small_job_wakes_none() -> None:
    seen = _python(JOB_END)
    assert seen["woke_for_small"] is False, seen
    assert seen["refilled"] >= 16 << 20, seen
    assert seen["nice"] == 19 and seen["main_nice"] < 19, seen  # the thread alone


STOPPED = """
    room.configure(32 * MB)
    kept = touched(8)
    calls = []
    def after_two_chunks():  # a job arrives while the third chunk would be faulted in
        calls.append(1)
        return len(calls) > 2
    first = room.refill(after_two_chunks)
    rest = room.refill()  # growth still counted: the next refill goes on from there
    print(json.dumps({"first": first, "rest": rest, "again": room.refill()}))
    """


def test_a_refill_stops_when_a_job_comes_and_the_next_goes_on_from_there() -> None:
    seen = _python(STOPPED)
    assert seen["first"] == 2 * headroom.CHUNK, seen
    assert seen["rest"] >= 16 << 20 and seen["again"] == 0, seen


def _refilled(stack, pid: str, name: str) -> int:
    """The worker's count, from the reply of a meta job (its counters ride on every reply)."""
    assert ask(stack.endpoint, {"type": "meta", "pid": pid, "fn": name})[0] == b""
    status = json.loads(ask(stack.endpoint, {"pid": "x", "type": "status"})[2])
    return int(status["cache"].get("headroom_refilled_bytes", 0))


def test_a_real_worker_refills_after_frames_that_grew_its_heap(testdata) -> None:
    """Two Pilatus 6M frames kept in tier 1 (~35 MB each) in a worker of the dev stack: its
    replies then report the heap it faulted in ahead (0 before: nothing had grown)."""
    files = ("cbf/thau_3_2_0001.cbf", "cbf/thau_3_2_0002.cbf")
    with dev_stack(testdata, files=files) as stack:
        pid = stack.sign_session(dev_user(), [0])
        assert _refilled(stack, pid, files[0]) == 0  # a meta job grows no heap
        for name in files:
            assert ask(stack.endpoint, {"type": "jpeg", "pid": pid, "fn": name})[0] == b""
        wait_until("the worker's refill", lambda: _refilled(stack, pid, files[0]) >= 32 << 20)
