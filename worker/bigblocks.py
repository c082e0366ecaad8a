"""Frames too big for the heap in mappings that are reused, with one made ahead.

glibc maps every block over its mmap threshold (32 MiB at most, worker/warmup.py) apart and
unmaps it when freed, so each Eiger 16M frame a worker decodes (72.5 MB of uint32) lands in
memory this VM never touched: stepping through the frames of a series, a read took 100-220 ms
instead of ~27, nearly all of it faulting the output in (worker/headroom.py says why that is
slow here). :func:`empty` hands out such arrays in anonymous mappings of their own. One whose
array and views are all gone goes back to a pool of free mappings (up to ``SPARE_BYTES``,
beyond that it is unmapped), and the headroom thread keeps one free mapping of the last size
asked for faulted in ahead (``MADV_POPULATE_WRITE``, at nice 19), so the next frame's decode
writes into pages already there. A mapping is only ever this worker's (one user, one ESAF):
a reused one holds a frame the same session read before, never anyone else's.
"""

from __future__ import annotations

import math
import mmap
import threading
import weakref
from collections import deque
from collections.abc import Callable

import numpy as np

from worker import warmup

MIN_BYTES = warmup.MMAP_FROM_BYTES  # glibc maps these apart anyway
SPARE_BYTES = 80 << 20  # free mappings kept at most: one Eiger 16M frame
MADV_POPULATE_WRITE = 23  # linux/mman.h, Linux 5.14
PAGE = mmap.PAGESIZE
CHUNK = 1 << 20  # faulted in per madvise (here and worker/headroom.py): ~0.35-0.7 ms of work


class Pool:
    """Free mappings by size, and the size the next frame will likely want.

    An array's finalizer only queues its mapping (``_returned``): it may run inside a garbage
    collection on any thread, even one holding ``_lock``, so it takes no lock."""

    def __init__(self, spare_bytes: int = SPARE_BYTES) -> None:
        self.spare_bytes = spare_bytes
        self._free: dict[int, list[mmap.mmap]] = {}
        self._held = 0  # bytes of free mappings
        self._returned: deque[tuple[mmap.mmap, int]] = deque()
        self._lock = threading.Lock()
        self.wanted = 0  # the last size asked for: the one made ahead
        self.reused = 0  # arrays given a mapping from the pool (tests)
        self.populate = True  # False where the kernel refused MADV_POPULATE_WRITE
        self._making: tuple[mmap.mmap, int, int] | None = None  # (mapping, size, done)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """Like ``np.empty``; arrays under MIN_BYTES come from numpy as they always did."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_BYTES:
            return np.empty(shape, dtype)
        size = -(-nbytes // PAGE) * PAGE
        with self._lock:
            self._drain()
            free = self._free.get(size)
            mapping = free.pop() if free else None
            if mapping is not None:
                self._held -= size
                self.reused += 1
            self.wanted = size
        if mapping is None:
            mapping = _new(size)
        array: np.ndarray = np.ndarray(shape, dtype, buffer=mapping)
        weakref.finalize(array, self._returned.append, (mapping, size))
        return array

    def short(self) -> bool:
        """Whether no free mapping of the wanted size is waiting (one should be made)."""
        size = self.wanted
        return bool(size) and self.spare_bytes >= size and not self._free.get(size)

    def make_ahead(self, stop: Callable[[], bool] = lambda: False) -> int:
        """A free mapping of the wanted size, faulted in, if there is none, CHUNK at a time
        until ``stop`` says a job is in hand (a mapping half made is finished next time);
        the bytes faulted in. Runs on the headroom thread (worker/headroom.py), which holds
        no job: each madvise call holds the mmap lock that every mmap, munmap and brk waits
        for."""
        with self._lock:
            self._drain()
            size = self.wanted
            making = self._making if self._making and self._making[1] == size else None
            if making is None and (
                not size or self._free.get(size) or self._held + size > self.spare_bytes
            ):
                return 0
            self._making = None
        mapping, _, at = making or (_new(size), size, 0)
        start = at
        try:
            while at < size and self.populate:
                if stop():
                    self._making = (mapping, size, at)
                    return at - start
                mapping.madvise(MADV_POPULATE_WRITE, at, min(CHUNK, size - at))
                at += CHUNK
        except OSError:  # a kernel before 5.14: the mapping still spares the mmap call
            self.populate = False
        self._returned.append((mapping, size))
        with self._lock:
            self._drain()
        return min(at, size) - start

    def held(self) -> int:
        """Bytes of free mappings kept."""
        with self._lock:
            self._drain()
            return self._held

    def _drain(self) -> None:
        """Mappings whose arrays are gone: kept while they fit in ``spare_bytes``, else
        unmapped. Under ``_lock``."""
        while self._returned:
            mapping, size = self._returned.popleft()
            if self._held + size <= self.spare_bytes:
                self._free.setdefault(size, []).append(mapping)
                self._held += size
            else:
                mapping.close()


def _new(size: int) -> mmap.mmap:
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


POOL = Pool()  # one per worker process
empty = POOL.empty
