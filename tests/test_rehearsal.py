"""A spare's rehearsal (worker/warmup.py ``rehearse_on_threads``): it leaves no thread behind,
fails as the spare's main-thread rehearsal did, and leaves the malloc arenas of a worker's
first threads already faulted in."""

from __future__ import annotations

import subprocess
import sys
import textwrap

REPO_ROOT = __file__.rsplit("/tests/", 1)[0]

FIRST_THREAD_FAULTS = textwrap.dedent(
    """
    import resource, sys, threading
    import numpy as np
    from worker import warmup
    assert warmup.tune_malloc()
    if sys.argv[1] == "rehearsed":
        warmup.rehearse_on_threads()
    assert threading.active_count() == 1, threading.enumerate()
    faults = []
    def first_job():  # a first image's buffers, taken in a new thread's arena
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        buffers = [np.ones(4 << 20, np.uint8) for _ in range(6)]
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
        del buffers
    thread = threading.Thread(target=first_job)
    thread.start()
    thread.join()
    print(faults[0])
    """
)


def _first_thread_faults(mode: str) -> int:
    argv = [sys.executable, "-c", FIRST_THREAD_FAULTS, mode]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    return int(done.stdout)


def test_a_rehearsed_spare_s_first_thread_writes_into_pages_already_faulted_in() -> None:
    fresh = _first_thread_faults("fresh")
    assert fresh >= 500, fresh  # 24 MiB of new pages (fewer with huge pages, never this few)
    assert _first_thread_faults("rehearsed") < 50


FAILING_REHEARSAL = textwrap.dedent(
    """
    import threading
    from worker import warmup
    def broken():
        raise OSError(28, "No space left on device")
    warmup.rehearse_in_a_temporary_folder = broken
    try:
        warmup.rehearse_on_threads()
    except OSError as exc:
        print(exc.errno, threading.active_count())
    """
)


def test_a_failed_rehearsal_raises_in_the_spare_and_leaves_no_thread() -> None:
    """The spare dies of it (and is replaced), as when the rehearsal ran on its main thread;
    the other rehearsal thread does not wait for the barrier's backstop."""
    argv = [sys.executable, "-c", FAILING_REHEARSAL]
    done = subprocess.run(
        argv, capture_output=True, text=True, check=True, cwd=REPO_ROOT, timeout=20
    )
    assert done.stdout.split() == ["28", "1"]
