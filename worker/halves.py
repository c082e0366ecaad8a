"""Both cores for one big frame: a step split in two halves, one on a helper thread.

A cold Eiger 16M read is a handful of passes over 72 MB (decoding the bitshuffle/LZ4 chunk,
the mask of invalid pixels, masking them, the pyramid's halvings), each bound by one core's
memory bandwidth and each releasing the GIL (numpy's ufuncs; the bitshuffle decoder, called
through ctypes). Split in two, each takes about half as long when the second core is free.

Frames under ``MIN_ITEMS`` pixels are done whole: no thread is ever started for the zygote's
warm-up or a spare's rehearsal (a thread does not survive a fork; the helpers are dropped in a
forked child anyway and started again on first use).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

MIN_ITEMS = 1 << 20  # 1M pixels: below, a thread hand-off costs more than it saves
HELPERS = 2  # one per job thread that may be splitting at once, within reason

A = TypeVar("A")
B = TypeVar("B")
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _forget() -> None:
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget)


def _helpers() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(HELPERS, thread_name_prefix="half")
        return _pool


def both(first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """``first`` on a helper thread while ``second`` runs here; both results (or the first
    exception)."""
    future = _helpers().submit(first)
    try:
        b = second()
    finally:
        a = future.result()
    return a, b


def ranges(n: int, step: Callable[[int, int], A], items: int | None = None) -> list[A]:
    """``step(lo, hi)`` over [0, n) in two halves when the work (``items``, else n) is big
    enough, else in one; the results."""
    if (n if items is None else items) < MIN_ITEMS or n < 2:
        return [step(0, n)]
    mid = n // 2
    return list(both(lambda: step(0, mid), lambda: step(mid, n)))


def flat(a: np.ndarray) -> np.ndarray:
    """A C-contiguous array's one-dimensional view (``ranges`` indexes it)."""
    return a.reshape(-1)
