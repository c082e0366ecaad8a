"""Fresh heap pages faulted in while the worker is idle, not while a user waits.

On this VM a page the process has never touched costs 2-40 us to fault in. A worker whose
LRU is still filling keeps each new frame's pyramid (a Pilatus 6M: ~35 MB) and each new
size's reduction (~2.9 MB at 600 px) in memory the heap has just grown: browsing to the next
frame of a series took 60-100 ms instead of ~17, nearly all of it the read faulting in its
buffers. So once the heap in use has grown and no job has been in hand for SETTLE_S,
:func:`Headroom.refill` makes sure the heap's free top holds ``worker_headroom_bytes``
(blocks taken from the top, which grows for them, and given back to it) and asks the kernel to
fault in what it has not yet (``madvise(MADV_POPULATE_WRITE)``: the pages are made present and
writable, their contents left alone, so it is harmless on memory in use), on a thread of its
own at the lowest priority that stops when a job comes: the next request's buffers find their
pages ready. The cost: that much free heap resident per worker that is filling its LRU, and
the same page faults, paid while the worker is idle. Frames too big for the heap get the same
from worker/bigblocks.py, whose mapping made ahead this thread makes too.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from worker import bigblocks, warmup
from worker.bigblocks import CHUNK, MADV_POPULATE_WRITE, PAGE

log = logging.getLogger("worker.headroom")
LOWEST_NICE = 19
SETTLE_S = 0.02  # no job in hand for this long before a refill starts
GROWTH = 8 << 20  # heap in use grown this much since the last refill: refill again
BLOCK = 8 << 20  # below the mmap threshold (worker/warmup.py): taken from the heap's top


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33): ``keepcost`` is the size of the heap's free top."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _libc() -> Any:
    """The C library with the calls this module makes typed, or None where one is missing
    (not glibc, a glibc before mallinfo2): the headroom then stays off."""
    libc = warmup.libc()
    if libc is None:
        return None
    try:
        libc.mallinfo2.restype = _MallInfo2
        libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t]
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
    except AttributeError:
        return None
    return libc


_LIBC = _libc()  # at import, in the zygote


class Headroom:
    """The heap's free top, kept at least half of ``bytes`` and faulted in once per growth.
    ``done`` is the end of what was faulted in, so a refill walks only the pages the heap
    gained since (walking resident pages again costs ~0.1 ms per MB)."""

    def __init__(self) -> None:
        self._libc: Any = None
        self._lock = threading.Lock()
        self.bytes = 0
        self.done = 0
        self.refilled = 0  # bytes asked to be faulted in, in all
        self.used = 0  # heap bytes in use at the last refill (or at configure)
        self._cond = threading.Condition()
        self._due = False  # a refill is wanted once the worker is quiet
        self.busy = 0  # jobs in hand
        self.quiet_since = 0.0  # when the last job ended
        self._starting = threading.Lock()
        self._thread: threading.Thread | None = None

    def configure(self, nbytes: int) -> bool:
        """Keep ``nbytes`` of the heap's top faulted in from now on (0: none); whether it is
        on (False also where the C library cannot)."""
        libc = _LIBC if nbytes > 0 else None
        with self._lock:
            self._libc, self.bytes = libc, nbytes if libc is not None else 0
            self.used = int(libc.mallinfo2().uordblks) if libc is not None else 0
        bigblocks.POOL.spare_bytes = bigblocks.SPARE_BYTES if libc is not None else 0
        return libc is not None

    def _grown(self, used: int) -> bool:
        """Whether the heap in use (``used``, mallinfo2's uordblks) grew by GROWTH since the
        last refill (the LRU is filling: more will come). A worker that only answered small
        jobs is left as it is: a new session's first meta job no longer makes it fault in 64
        MB, which back-to-back new sessions paid for (15 -> 43-58 ms each,
        bench/interactive.py ``burst_session_ms``)."""
        if used < self.used:  # freed meanwhile: growth counts from the lowest
            self.used = used
        return used - self.used >= GROWTH

    def _grow(self) -> None:
        """The free top up to ``bytes`` if it is under half that: blocks taken (the heap
        grows for those the top cannot hold) and freed, so the top takes them all back."""
        libc = self._libc
        if int(libc.mallinfo2().keepcost) >= self.bytes // 2:
            return
        blocks = [libc.malloc(BLOCK) for _ in range(-(-self.bytes // BLOCK))]
        for block in blocks:
            libc.free(block)  # free(NULL), a block malloc could not give, does nothing

    def top(self) -> tuple[int, int]:
        """(start, end) of the heap's free top, page aligned inward; (0, 0) if off."""
        libc = self._libc
        if libc is None:
            return 0, 0
        end = int(libc.sbrk(0) or 0)
        start = end - int(libc.mallinfo2().keepcost)
        return (start + PAGE - 1) & ~(PAGE - 1), end & ~(PAGE - 1)

    def refill(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Fault in the free top's pages not yet faulted in, CHUNK at a time, until ``stop``
        says a job is in hand (the next refill goes on from there). Each call holds the mmap
        lock, which a job thread's mmap, munmap or brk waits for. The bytes faulted in."""
        with self._lock:
            libc = self._libc
            if libc is None:
                return 0
            used = int(libc.mallinfo2().uordblks)
            if not self._grown(used):
                return 0
            self._grow()
            start, end = self.top()
            if end < self.done:  # trimmed since: pages above the new end are gone
                self.done = 0
            start = at = max(start, self.done)
            for at in range(start, end, CHUNK):
                if stop():  # growth still counts from before: the next job end wakes us
                    break
                if libc.madvise(at, min(CHUNK, end - at), MADV_POPULATE_WRITE) != 0:
                    if ctypes.get_errno() == errno.EINVAL:  # a kernel before 5.14: stop
                        self._libc, self.bytes = None, 0
                    return 0  # ENOMEM: the heap shrank meanwhile; the next refill sees it
            else:
                at, self.used = max(start, end), used  # all done: growth counts from here
            self.done = at
            self.refilled += at - start
            return at - start

    def job_began(self) -> None:
        """A job is in hand: a refill under way stops at its next chunk."""
        with self._cond:
            self.busy += 1

    def job_ended(self) -> None:
        """A job is done: once no job has been in hand for SETTLE_S, refill if the heap in
        use grew or a big frame took the mapping made ahead (worker/bigblocks.py), on a
        thread of its own at the lowest priority (started on the first need, after the
        privilege drop). Only while no job is in hand: faulting fresh pages in beside a job
        slowed it even at nice 19 (on this VM the host backs them, stalling the vCPU), an
        Eiger 16M xsize right after a cold frame took 28-30 ms instead of 6."""
        libc = self._libc  # None for good once a refill found the kernel too old
        with self._cond:
            self.busy = max(0, self.busy - 1)
            self.quiet_since = time.monotonic()
        if libc is None or not (
            self._grown(int(libc.mallinfo2().uordblks)) or bigblocks.POOL.short()
        ):
            return  # most jobs: no thread woken
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="headroom", daemon=True)
                self._thread.start()
        with self._cond:
            self._due = True
            self._cond.notify()

    def _busy(self) -> bool:
        return self.busy > 0

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_NICE)
        except OSError as exc:  # a syscall filter without setpriority (systemd/is-procmgr)
            log.warning("headroom refills at normal priority: setpriority refused (%s)", exc)
        while True:
            with self._cond:
                while True:
                    wait = None
                    if self._due and not self.busy:
                        wait = self.quiet_since + SETTLE_S - time.monotonic()
                        if wait <= 0:
                            break
                    self._cond.wait(wait)
                self._due = False
            try:
                self.refill(self._busy)
                bigblocks.POOL.make_ahead(self._busy)
            except Exception:
                log.exception("headroom refill failed")


HEADROOM = Headroom()  # one heap per worker process (worker/warmup.py: one malloc arena)
job_began, job_ended = HEADROOM.job_began, HEADROOM.job_ended


def counters() -> dict[str, int]:
    """For the worker's replies (pyis_common/workerstats.py)."""
    return {"headroom_refilled_bytes": HEADROOM.refilled}
