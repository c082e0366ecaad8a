"""Arrays kept between renders in memory of their own, out of the malloc heap.

A followed frame's render takes ~50 MB of buffers from the worker's one malloc arena and frees
them (worker/warmup.py ``tune_malloc``); the next render reuses them only while they are still
one free stretch. A value kept after the render (the frame's stage 1, for a later request) that
malloc placed in that stretch cut it, a little more with every frame until the LRU began to
evict: the next render's buffers then lay partly in fresh pages, which this VM's host backs anew
(bench/live.py at 25 Hz: 5-7 renders in 100 read in 12-37 ms instead of 5, none with the keeping
off). One anonymous mapping per kept value is unmapped whole when the value leaves the LRU and
never lies in the heap. It costs a copy: ~0.5 ms for a 512 px stage 1 (a one-off timing), after
the reply, when its pages were freed recently (worker/followlean.py keeps its newest 16). Small
values stay in the heap (they cut little), and so does everything once :data:`MAX_MAPPINGS` are
live: the kernel allows a process 65530 mappings by default, and a mapping it cannot make fails
whatever asked for it (a thread's stack, a large frame).
"""

from __future__ import annotations

import mmap
import threading
import weakref

import numpy as np

MIN_BYTES = 256 << 10  # a value smaller than this stays in the heap
MAX_MAPPINGS = 4096  # live mappings at most: a guard (a 768 MiB LRU of 256 KiB values: 3072)
ALIGN = 64  # each array starts on a cache line
_live = 0
_lock = threading.Lock()


def copies(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...] | None:
    """The arrays' values in one anonymous mapping of their own (unmapped once every copy and
    view is gone), each with its shape and dtype, C-contiguous and writable; None when they
    hold under MIN_BYTES together or MAX_MAPPINGS are live (the caller keeps them as they
    are)."""
    global _live
    offsets, size = [], 0
    for array in arrays:
        offsets.append(size)
        size += -(-array.nbytes // ALIGN) * ALIGN
    with _lock:
        if size < MIN_BYTES or _live >= MAX_MAPPINGS:
            return None
        _live += 1
    try:
        mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError:
        _release()
        return None
    weakref.finalize(mapping, _release)
    out = []
    for array, offset in zip(arrays, offsets, strict=True):
        copy: np.ndarray = np.ndarray(array.shape, array.dtype, buffer=mapping, offset=offset)
        np.copyto(copy, array)
        out.append(copy)
    return tuple(out)


def live() -> int:
    """Mappings made here and not yet unmapped."""
    with _lock:
        return _live


def _release() -> None:
    global _live
    with _lock:
        _live -= 1
