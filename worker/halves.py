"""Both cores for one big frame: a step's work shared with a helper thread.

A cold Eiger 16M read is a handful of passes over 72 MB (decoding the bitshuffle/LZ4 chunk,
the mask of invalid pixels, masking them, the pyramid's halvings), each bound by one core's
memory bandwidth and each releasing the GIL (numpy's ufuncs; the bitshuffle decoder, called
through ctypes). Shared, each takes about half as long when the second core is free. When it
is not (a busy machine), the caller does not wait for a helper that has not started: it takes
the work back (a helper's future not yet running is cancelled), and ``pieces`` hands out
pieces of about PIECE_ITEMS to whichever thread is free, so a late helper costs at most one.

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
PIECE_ITEMS = 1 << 20  # pixels per piece of ``pieces``
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
    """``first`` on a helper thread while ``second`` runs here, or here after it if no helper
    had started it by then; both results (or the first exception)."""
    future = _helpers().submit(first)
    try:
        b = second()
    finally:
        done = future.cancel()
    return (first() if done else future.result()), b


def pieces(n: int, step: Callable[[int, int], A], items: int | None = None) -> list[A]:
    """``step(lo, hi)`` over [0, n), in pieces of about PIECE_ITEMS of the work (``items``,
    else n) that this thread and a helper take in turn; the results, in no order."""
    count = max(1, min(n, (n if items is None else items) // PIECE_ITEMS))
    if count == 1 or (n if items is None else items) < MIN_ITEMS:
        return [step(0, n)]
    bounds = iter([(n * i // count, n * (i + 1) // count) for i in range(count)])
    lock = threading.Lock()

    def take() -> list[A]:
        out: list[A] = []
        while True:
            with lock:
                piece = next(bounds, None)
            if piece is None:
                return out
            out.append(step(*piece))

    future = _helpers().submit(take)
    try:
        mine = take()
    finally:
        theirs = [] if future.cancel() else future.result()
    return mine + theirs


def flat(a: np.ndarray) -> np.ndarray:
    """A C-contiguous array's one-dimensional view (``ranges`` indexes it)."""
    return a.reshape(-1)
