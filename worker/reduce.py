"""Stage 1: cut the zoom window out of a frame and max-pool it to the output size, at full depth.

Each output pixel is the maximum of its source box, so a one-pixel Bragg spot survives a 16x
reduction (an average would wash it out). Boxes partition the window with edges at
``floor(i * win / dst)``, so every source pixel belongs to exactly one box; when the output is
larger than the window, pixels are sampled nearest. Masked pixels never win a maximum and a box
with only masked pixels is invalid (drawn white, never red, never counted).

Speed (bench/stages.py: a Pilatus 6M frame to 512 px in ~3.2 ms, 2.3x a copy of the frame;
0.8-1.8x for frames larger than the L3 cache): numpy's ``maximum.reduceat`` walks the
reduced axis with a large stride (17 ms). Instead, (1) rows: boxes that repeat with a fixed
stride form one strided view each, reduced over whole contiguous rows (35 calls for a 6M frame);
(2) columns: a sparse table on the flat row-reduced array, so the max of any q or q+1 pixels is
the max of two table entries, gathered by ``take``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided

from pyis_common.errors import BadRequest
from pyis_common.protocol import MAX_SIZE
from worker.formats import Frame

MAX_SIDE = MAX_SIZE  # the request caps xsize/ysize; a derived height obeys the same cap


@dataclass(frozen=True)
class Reduced:
    data: np.ndarray  # (h, w) source dtype: the max of each source box
    valid: np.ndarray  # bool (h, w): False where every source pixel of the box was masked
    saturated: np.ndarray  # bool (h, w): valid and >= the saturation level
    stats: dict[str, float | int]  # n mean min max rms stddev nSaturated over valid pixels


Run = tuple[int, int, int, int, int, int]  # first box, box step, count, first row, row step, height
TABLE_BYTES = 1 << 20  # column sparse-table block: fits in L2 next to its ping-pong twin
STATS_CHUNK = 1 << 16  # pixels per float64 chunk in stats(): 512 KiB, fits in L2
NO_PIXELS = np.empty(0, np.intp)  # a Plan's index or starts when its kind has none
MAX_CLASSES = 16  # strides tried when grouping boxes into runs; more only lengthens planning


@dataclass(frozen=True)
class Plan:
    """How one axis goes from ``src`` to ``dst`` pixels; cached, as geometries repeat."""

    kind: str  # "same", "up" (nearest sampling) or "down" (max over boxes)
    dst: int
    index: np.ndarray = field(default_factory=lambda: NO_PIXELS)  # up: each pixel's source
    starts: np.ndarray = field(default_factory=lambda: NO_PIXELS)  # down: each box's first
    span: int = 1  # down: the largest power of two <= the narrowest box
    ends: np.ndarray | None = None  # down: start of each box's last span, None if all == span
    runs: tuple[Run, ...] = ()  # down, rows: the boxes grouped, when not floor(i * src / dst)


def _boxes(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """First pixel and width of each box: edges at floor(i * src / dst), a partition."""
    edges = (np.arange(dst + 1) * src) // dst
    return edges[:-1], np.diff(edges)


def _class_runs(starts: np.ndarray, widths: np.ndarray, first: int, every: int) -> list[Run]:
    """Boxes first, first+every, ... split where the height or the start spacing changes."""
    s, w = starts[first::every], widths[first::every]
    steps = np.diff(s)
    cut = np.zeros(s.size, bool)
    cut[0] = True
    cut[1:] |= w[1:] != w[:-1]
    cut[2:] |= steps[1:] != steps[:-1]
    bounds = [*np.flatnonzero(cut).tolist(), s.size]
    return [
        (first + a * every, every, b - a, int(s[a]), int(steps[a]) if b - a > 1 else 1, int(w[a]))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


@lru_cache(maxsize=64)
def _runs(src: int, dst: int) -> tuple[Run, ...]:
    """Row boxes grouped for one strided reduce each: the fewest runs over box strides
    1..MAX_CLASSES. Box edges floor(i*src/dst) repeat almost exactly every m boxes when m*src/dst
    is nearly whole, so a stride m > 1 cuts the ufunc calls 3-6x against runs of adjacent boxes.
    """
    if src % dst == 0:  # equal boxes (a pyramid level's blocks): one run, nothing to search
        return ((0, 1, dst, 0, src // dst, src // dst),)
    return grouped(*_boxes(src, dst))


def grouped(starts: np.ndarray, widths: np.ndarray) -> tuple[Run, ...]:
    """Boxes (first pixel, height) that partition the rows, grouped into the fewest runs."""
    best: list[Run] = []
    for every in range(1, min(MAX_CLASSES, starts.size) + 1):
        runs = [r for first in range(every) for r in _class_runs(starts, widths, first, every)]
        if not best or len(runs) < len(best):
            best = runs
    return tuple(best)


@lru_cache(maxsize=64)
def plan(src: int, dst: int) -> Plan:
    if dst == src:
        return Plan("same", dst)
    if dst > src:
        index = ((2 * np.arange(dst) + 1) * src) // (2 * dst)  # centre of each output pixel
        return Plan("up", dst, index=index)
    starts, widths = _boxes(src, dst)
    span = 1 << (int(widths.min()).bit_length() - 1)
    ends = None if (widths == span).all() else starts + widths - span
    return Plan("down", dst, starts=starts, span=span, ends=ends)


def output_size(width: int, height: int, xsize: int, ysize: int | None) -> tuple[int, int]:
    """(w, h) of the output: ``xsize`` alone keeps the window's aspect ratio (the C server made
    every image square); with ``ysize`` the image fits inside xsize x ysize, aspect kept.
    Integer rounding, so the same request always gives the same size.
    """
    if min(width, height) < 1 or xsize < 1 or (ysize is not None and ysize < 1):
        raise BadRequest("output and window sizes must be at least one pixel")
    if ysize is None or xsize * height <= ysize * width:
        w, h = xsize, max(1, (2 * height * xsize + width) // (2 * width))
    else:
        w, h = max(1, (2 * width * ysize + height) // (2 * height)), ysize
    if h > MAX_SIDE or w > MAX_SIDE:
        raise BadRequest(f"the output would be {w}x{h} pixels; give a smaller xsize or a ysize")
    return w, h


def window(
    height: int, width: int, zoom: float, segcol: float, segrow: float
) -> tuple[slice, slice]:
    """Rows and columns of the zoom window: the image divided by ``zoom``, segment
    (segcol, segrow) of that grid, clamped to the image (the C server read past its edge).
    """
    if not all(math.isfinite(v) for v in (zoom, segcol, segrow)):
        raise BadRequest("zoom, segcol and segrow must be finite numbers")
    if zoom <= 1:
        return slice(0, height), slice(0, width)
    win_w, win_h = max(1, int(width / zoom)), max(1, int(height / zoom))
    x0 = min(max(int(win_w * segcol), 0), width - win_w)
    y0 = min(max(int(win_h * segrow), 0), height - win_h)
    return slice(y0, y0 + win_h), slice(x0, x0 + win_w)


def pool_rows(x: np.ndarray, p: Plan, op: np.ufunc) -> np.ndarray:
    """Reduce axis 0, one strided view per run: (count, height, width) with whole contiguous
    rows innermost, so each call is a vectorised max over long rows. The view never leaves x:
    its last row is the last row of the run's last box.
    """
    if p.kind == "same":
        return x
    if p.kind == "up":
        return np.take(x, p.index, axis=0)
    out = np.empty((p.dst, x.shape[1]), x.dtype)
    row, col = x.strides
    for first, every, count, start, step, tall in p.runs or _runs(x.shape[0], p.dst):
        view = as_strided(
            x[start:], (count, tall, x.shape[1]), (step * row, row, col), writeable=False
        )
        part = out[first : first + every * (count - 1) + 1 : every]
        if tall <= 3:  # one to three rows: plain maxima beat reduce's setup (15% at 1024 px)
            op(view[:, 0], view[:, tall - 1], out=part)
            if tall == 3:
                op(part, view[:, 1], out=part)
        else:
            op.reduce(view, axis=1, out=part)
    return out


def pool_cols(x: np.ndarray, p: Plan, op: np.ufunc) -> np.ndarray:
    """Reduce axis 1 with a sparse table: after k shifted maxima, entry r holds the max of pixels
    r..r+2^k-1, so a box of width w at s is max(T[s], T[s+w-2^k]) for 2^k <= w < 2^(k+1).
    Built on the flat block (long inner loops); a window that would cross a row end is never
    read. Blocks of :data:`TABLE_BYTES` keep the table in L2 (~15% faster than one block).
    """
    if p.kind == "same":
        return x
    if p.kind == "up":
        return np.take(x, p.index, axis=1)
    x = np.ascontiguousarray(x)
    out = np.empty((x.shape[0], p.dst), x.dtype)
    step = max(1, TABLE_BYTES // (x.shape[1] * x.itemsize))
    buffers = [np.empty(min(step, x.shape[0]) * x.shape[1], x.dtype) for _ in range(2)]
    for r in range(0, x.shape[0], step):
        block, part = x[r : r + step], out[r : r + step]
        table, span = block.reshape(-1), 1
        while span < p.span:  # ping-pong in our buffers: never write into the frame
            buf = buffers[span.bit_length() % 2][: block.size]
            op(table[:-span], table[span:], out=buf[:-span])
            buf[-span:] = table[-span:]  # never read; set so no byte is uninitialised
            table, span = buf, span * 2
        rows = table.reshape(block.shape)
        # mode="clip" skips take's bounds-checked buffering; the indices are in range by design
        np.take(rows, p.starts, axis=1, out=part, mode="clip")
        if p.ends is not None:
            op(part, np.take(rows, p.ends, axis=1, mode="clip"), out=part)
    return out


def pool(x: np.ndarray, rows: Plan, cols: Plan, op: np.ufunc) -> np.ndarray:
    """Rows first: they are contiguous and cut the data by the row factor before columns."""
    return pool_cols(pool_rows(x, rows, op), cols, op)


def saturation_level(frame: Frame) -> float:
    """The detector's own level, else the dtype's maximum for integers (floats never saturate)."""
    if frame.saturation is not None:
        return float(frame.saturation)
    kind = frame.data.dtype.kind
    return float(np.iinfo(frame.data.dtype).max) if kind in "iu" else math.inf


def _masked_pool(
    frame: Frame, rows: slice, cols: slice, pr: Plan, pc: Plan
) -> tuple[np.ndarray, np.ndarray]:
    """(max, valid). Three cases, cheapest first:

    - no mask: every box is valid;
    - ``negative_masked`` (Pilatus -1/-2): pool the data as is; masked pixels are negative and
      lose to any valid one, so a box is valid exactly when its max is >= 0. No masked copy;
    - any other mask: pool the data with masked pixels at the dtype's minimum (so they never
      win) -- written in place when the frame is this request's ``scratch`` copy, else into a
      copy -- and pool the inverted mask as uint8 to learn which boxes hold a valid pixel.
    """
    data = frame.data[rows, cols]
    floats = data.dtype.kind == "f"
    op = np.fmax if floats else np.maximum  # fmax skips NaN unless the whole box is NaN
    if frame.negative_masked or frame.mask is None:
        out = pool(data, pr, pc, op)
        if frame.negative_masked:
            return out, out >= 0
        return out, ~np.isnan(out) if floats else np.ones(out.shape, bool)
    mask = frame.mask[rows, cols]
    if floats:
        mask = mask | np.isnan(data)  # a NaN is no data, like a masked pixel
    low = -np.inf if floats else np.iinfo(data.dtype).min
    if frame.scratch and data.flags.writeable:
        np.putmask(data, mask, low)  # 10 ms instead of a 17 ms copy for a 16M frame
        out = pool(data, pr, pc, op)
    else:
        out = pool(np.where(mask, low, data), pr, pc, op)
    return out, pool((~mask).view(np.uint8), pr, pc, np.maximum).view(bool)


def stats(data: np.ndarray, valid: np.ndarray, saturated: np.ndarray) -> dict[str, float | int]:
    """float64 statistics of the valid reduced pixels (the C server summed squares in uint32).

    min/max run on the native dtype (SIMD); sums run on float64 chunks of
    :data:`STATS_CHUNK` pixels, so a 6M-pixel output never makes a 50 MB temporary. The
    variance comes from the sums: exact enough in float64 for detector counts.
    """
    flat = data.reshape(-1)
    values = flat if valid.all() else flat[valid.reshape(-1)]
    n = int(values.size)
    out: dict[str, float | int] = {"n": n, "nSaturated": int(np.count_nonzero(saturated))}
    if n == 0:
        return out
    total = square = 0.0
    for i in range(0, n, STATS_CHUNK):
        part = values[i : i + STATS_CHUNK].astype(np.float64)
        total += float(part.sum())
        square += float(np.dot(part, part))
    mean, square = total / n, square / n
    return out | {
        "mean": mean,
        "min": float(values.min()),
        "max": float(values.max()),
        "rms": math.sqrt(square),
        "stddev": math.sqrt(max(square - mean * mean, 0.0)),
    }


def reduce_max(
    frame: Frame,
    xsize: int,
    ysize: int | None = None,
    zoom: float = 1.0,
    segcol: float = 0.0,
    segrow: float = 0.0,
) -> Reduced:
    """Window, max-pool, mark validity and saturation, and compute the stats (stage 1)."""
    height, width = frame.data.shape
    rows, cols = window(height, width, zoom, segcol, segrow)
    dst_w, dst_h = output_size(cols.stop - cols.start, rows.stop - rows.start, xsize, ysize)
    pr, pc = plan(rows.stop - rows.start, dst_h), plan(cols.stop - cols.start, dst_w)
    data, valid = _masked_pool(frame, rows, cols, pr, pc)
    if not data.flags.owndata:  # a view would pin the whole frame in the cache
        data = data.copy()
    saturated = valid & (data >= saturation_level(frame))
    return Reduced(data=data, valid=valid, saturated=saturated, stats=stats(data, valid, saturated))
