"""Arrays kept between renders in memory of their own, out of the malloc heap.

A followed frame's render takes ~50 MB of buffers from the worker's one malloc arena and frees
them (worker/warmup.py ``tune_malloc``); the next render reuses them only while they are still
one free stretch. A value kept after the render (the frame's stage 1, for a later request)
that malloc placed in that stretch cut it, a little more with every frame until the LRU began
to evict: the next render's buffers then lay partly in fresh pages, which this VM's host backs
anew (bench/live.py at 25 Hz: 5-7 renders in 100 read in 12-37 ms instead of 5, none with the
keeping off). An anonymous mapping per kept array is freed whole when its entry leaves the LRU
and never lies in the heap. It costs a copy: ~0.35 ms for a 512 px stage 1, after the reply.
"""

from __future__ import annotations

import mmap

import numpy as np


def copy(array: np.ndarray) -> np.ndarray:
    """``array``'s values in an anonymous mapping of their own (unmapped when the copy and
    every view of it are gone), same shape and dtype, C-contiguous and writable."""
    mapping = mmap.mmap(-1, max(array.nbytes, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    out: np.ndarray = np.ndarray(array.shape, array.dtype, buffer=mapping)
    np.copyto(out, array)
    return out
