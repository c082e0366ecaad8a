"""A CBF byte-offset stream decoded on both cores: fabio's decoder on each half of the stream.

fabio's ``dec_cbf32`` releases the GIL for its loop, but a stream is one run of deltas, each
pixel the previous one plus its token: 1 byte (a delta of -127..127), or 0x80 and 2 bytes, or
0x80 00 80 and 4 bytes (7 bytes at most; the full format's 64-bit exception makes 15). A token
of more than one byte starts with 0x80, so a position none of whose LOOKBACK = 14 preceding
bytes is 0x80 is inside no longer token: a token starts there. The stream is cut at the first
such position past its middle, each half decoded apart (on a helper thread and here), and
the second half's values shifted by the first half's last one. int32 sums wrap alike in both
orders, so the pixels are fabio's, bit for bit (tests/test_byteoffset.py, on real frames and
crafted streams). A stream with no such position near its middle (hostile, or all wide
deltas) is decoded whole, as before.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from fabio.ext import byte_offset

from worker import halves

KEY = b"\x80"  # the first byte of every token longer than one byte
LOOKBACK = 14  # >= the longest token (15 bytes) - 1
WINDOW = 4096  # bytes looked at past the middle for a token start
Read = Callable[[int, int], bytes]  # (offset in the stream, length) -> exactly those bytes


def token_start(window: bytes) -> int | None:
    """The first index ``p >= LOOKBACK`` of ``window`` with no 0x80 in ``window[p - 14:p]``
    (so, when ``window`` lies on a stream, a token of that stream starts at ``p``)."""
    start = 0  # window[start:k] holds no 0x80
    while True:
        k = window.find(KEY, start)
        if (len(window) if k < 0 else k) - start >= LOOKBACK:
            return start + LOOKBACK
        if k < 0:
            return None
        start = k + 1


def decode_int32(read: Read, size: int, pixels: int) -> np.ndarray:
    """``byte_offset.dec_cbf32`` of the ``size`` bytes ``read`` gives, at most ``pixels``
    values, the two halves at once when the frame is big enough to pay for a hand-off."""
    cut = None
    if pixels >= halves.MIN_ITEMS and size > 2 * WINDOW:
        middle = size // 2
        found = token_start(read(middle - LOOKBACK, WINDOW))
        cut = None if found is None else middle - LOOKBACK + found
    if cut is None:
        return byte_offset.dec_cbf32(read(0, size), pixels)
    at = cut  # for the closures (mypy: an int, not Optional)
    tail, head = halves.both(
        lambda: byte_offset.dec_cbf32(read(at, size - at), pixels),
        lambda: byte_offset.dec_cbf32(read(0, at), pixels),
    )
    return joined(head, tail, pixels)


def joined(head: np.ndarray, tail: np.ndarray, pixels: int) -> np.ndarray:
    """The whole stream's values from its halves' (each decoded from 0): the tail shifted by
    the head's last value, cut at ``pixels`` as the whole decode stops there. Written into
    the rest of the head's own ``pixels``-long buffer when it has one (no 25 MB copy of a
    6M frame's head), else into a new array."""
    n1 = head.size
    if n1 >= pixels:
        return head
    m = min(tail.size, pixels - n1)
    last = head[-1] if n1 else np.int32(0)
    whole = _decoder_buffer(head, n1 + m)
    if whole is None:
        whole = np.empty(n1 + m, np.int32)
        np.copyto(whole[:n1], head)
    np.add(tail[:m], last, out=whole[n1 : n1 + m])
    return whole[: n1 + m]


def _decoder_buffer(head: np.ndarray, size: int) -> np.ndarray | None:
    """The array ``dec_cbf32`` decoded ``head`` into: it allocates ``size``-many values and
    returns a view of the first ones it wrote (through a Cython memoryview). None unless
    that array is found, writable, and starts where ``head`` does."""
    owner = getattr(getattr(head.base, "obj", None), "base", None)
    if not isinstance(owner, np.ndarray) or not head.size:
        return None
    fits = owner.dtype == np.int32 and owner.ndim == 1 and owner.size >= size
    fits = fits and owner.flags.writeable and owner.flags.c_contiguous
    return owner if fits and owner.ctypes.data == head.ctypes.data else None
