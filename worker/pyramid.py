"""A max-pyramid per frame: the frame at full depth and its power-of-two max-pooled levels.

A viewer that changes ``xsize``, zooms or pans asks for the same frame again and again; the C
server kept the raw frame per session, pyis read the file again. A :class:`Pyramid` keeps,
in the stage-1 LRU, level 0 (the frame, masked pixels already at the dtype's floor) and, built
on first use by halving the level below it, level k: the maximum of each 2^k x 2^k block (partial
blocks at the bottom and right edges), with its validity where the frame has a mask. A request
is reduced from level k, 2^k being the largest power of two not wider than its narrowest box,
so a new size costs a reduction of a frame 4^k times smaller, a zoom segment a reduction of its
window, and neither reads the file.

Every pixel of the frame belongs to exactly one block of each level and every block to exactly
one output box, so a one-pixel spot survives at its full value, as in :func:`reduce.reduce_max`.
The price of the shortcut: a box's edges fall on the level's 2^k grid, so up to 2^k - 1 source
pixels at an edge (less than one box) belong to the neighbouring box. Cold and cached requests
take the same path, so a served image is the one a fresh reduction gives, pixel for pixel.

Saturation needs no level of its own: a box is saturated exactly when the maximum of its valid
pixels reaches the level, and masked pixels sit below every valid value.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker import halves, reduce
from worker.formats import Frame

Rule = str  # how a box's validity is known: "all", "nan", "negative" or "mask" (a valid level)


@dataclass(frozen=True)
class Level:
    data: np.ndarray  # the max of each block at full depth; masked pixels at the dtype's floor
    valid: np.ndarray | None  # bool, only under the "mask" rule: the block holds a valid pixel

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + (self.valid.nbytes if self.valid is not None else 0)


STRIP = 32  # output rows per strip of ``halve``: two input rows each, 1 MB for a 16M frame


def level_for(win_w: int, win_h: int, dst_w: int, dst_h: int) -> int:
    """k of the coarsest level whose blocks are no wider than the narrowest output box."""
    narrowest = min(win_w // dst_w, win_h // dst_h)
    return max(narrowest, 1).bit_length() - 1


def pool_fine(x: np.ndarray, rows: reduce.Plan, cols: reduce.Plan, op: np.ufunc) -> np.ndarray:
    """:func:`reduce.pool`, with a shortcut for what a level usually needs: boxes of one or two
    pixels each way (a level is chosen so), i.e. the max of each box's first and last pixel.
    Two gathers per axis need no run planning, which costs more than the pooling here."""
    if rows.kind != "down" or cols.kind != "down" or rows.span != 1 or cols.span != 1:
        return reduce.pool(x, rows, cols, op)
    out = np.take(x, rows.starts, axis=0)
    if rows.ends is not None:
        _second_pixels(out, x, rows, op, 0)
    part = np.take(out, cols.starts, axis=1)
    if cols.ends is not None:
        _second_pixels(part, out, cols, op, 1)
    return part


FEW_WIDE = 5  # under 1 box in 5 two pixels wide, only those take their second pixel


def _second_pixels(
    out: np.ndarray, x: np.ndarray, plan: reduce.Plan, op: np.ufunc, axis: int
) -> None:
    """``out`` (x's first pixel of each box along ``axis``) takes the max with each box's second
    pixel. A level a little wider than the output (a Pilatus 6M's level 2, 616 px, for 600 px)
    has a handful of such boxes: a gather of those few columns instead of a whole second
    gather and maximum (0.2 ms of a 600 px reduction, bench/stages.py; the two break even at
    about 1 box in 4.5 two pixels wide)."""
    assert plan.ends is not None  # the caller checks: boxes two pixels wide exist
    wide = np.flatnonzero(plan.ends != plan.starts)
    if wide.size * FEW_WIDE >= plan.dst:
        op(out, np.take(x, plan.ends, axis=axis), out=out)
    elif axis == 0:
        out[wide] = op(out[wide], np.take(x, plan.ends[wide], axis=0))
    else:
        out[:, wide] = op(out[:, wide], np.take(x, plan.ends[wide], axis=1))


def valid_from_data(rule: Rule, data: np.ndarray) -> np.ndarray:
    """Which values of a level (or a window of it) are valid, for the rules that need no
    validity level of their own: Pilatus gaps are negative, some frames mark them NaN."""
    if rule == "negative":
        return data >= 0
    if rule == "nan":
        return ~np.isnan(data)
    return np.ones(data.shape, bool)


def saturated_boxes(
    rule: Rule, data: np.ndarray, valid: np.ndarray, saturation: float
) -> np.ndarray:
    """``valid & (data >= saturation)``: in one pass when no invalid box can reach the level
    (a NaN never does, a Pilatus gap's -1 not a level >= 0, a masked box's floor not a level
    above it), which is every detector's case."""
    if rule == "negative":
        implied = saturation >= 0
    elif rule == "mask":
        floats = data.dtype.kind == "f"
        implied = saturation > (-math.inf if floats else np.iinfo(data.dtype).min)
    else:  # "all": every box valid; "nan": NaN compares false
        implied = True
    return data >= saturation if implied else valid & (data >= saturation)


def halve(x: np.ndarray, op: np.ufunc) -> np.ndarray:
    """The next level: the ``op`` (maximum) of each 2 x 2 block, a lone last row or column
    kept as it is. Two passes of plain strided maxima (2.5x faster than a general pooling), in
    strips of STRIP output rows, so the rows between the passes stay in the cache (a 16M
    frame's would be a fresh 36 MB, page faults and all); the strips shared between two
    cores (worker/halves.py)."""
    h, w = x.shape
    pairs, even_w = h // 2, w - w % 2  # output rows made of two input rows; paired columns
    out = np.empty(((h + 1) // 2, (w + 1) // 2), x.dtype)

    def step(lo: int, hi: int) -> None:
        rows = np.empty((min(STRIP, hi - lo), w), x.dtype)
        for r0 in range(lo, hi, STRIP):
            r1 = min(hi, r0 + STRIP)
            part, two = rows[: r1 - r0], min(r1, pairs)
            op(x[2 * r0 : 2 * two : 2], x[2 * r0 + 1 : 2 * two : 2], out=part[: two - r0])
            if r1 > pairs:  # the lone last row
                part[-1] = x[-1]
            op(part[:, 0:even_w:2], part[:, 1:even_w:2], out=out[r0:r1, : even_w // 2])
            if w % 2:
                out[r0:r1, -1] = part[:, -1]

    halves.pieces(out.shape[0], step, items=x.size)
    return out


def max_op(data: np.ndarray) -> np.ufunc:
    """The maximum a box takes: ``fmax`` for floats, so a NaN loses to a number."""
    return np.fmax if data.dtype.kind == "f" else np.maximum


def rule_for(frame: Frame) -> Rule:
    """How a box's validity is known for this frame (:data:`Rule`)."""
    if frame.negative_masked:
        return "negative"  # Pilatus -1/-2: a box is valid when its max is >= 0
    if frame.mask is None:
        return "nan" if frame.data.dtype.kind == "f" else "all"
    return "mask"


def at_floor(data: np.ndarray, mask: np.ndarray, scratch: bool) -> tuple[np.ndarray, np.ndarray]:
    """``data`` with its masked (and, for floats, NaN) pixels at the dtype's floor, below every
    valid value so a maximum ignores them, and the validity: in place when the frame is the
    request's own (``scratch``; no 70 MB masked copy of a 16M frame)."""
    floats = data.dtype.kind == "f"
    mask = mask | np.isnan(data) if floats else mask
    low = -np.inf if floats else np.iinfo(data.dtype).min
    if scratch and data.flags.writeable and data.flags.c_contiguous:
        return _mask_in_place(data, mask, low)
    return np.where(mask, low, data), ~mask


def _mask_in_place(data: np.ndarray, mask: np.ndarray, low: float) -> tuple[np.ndarray, np.ndarray]:
    """Masked pixels of this request's own frame set to ``low``, and the validity, in halves
    (``copyto`` with ``where`` is 3x faster than ``putmask``)."""
    valid = np.empty(mask.shape, bool)

    def step(lo: int, hi: int) -> None:
        part = halves.flat(mask)[lo:hi]
        np.copyto(halves.flat(data)[lo:hi], low, where=part, casting="unsafe")
        np.logical_not(part, out=halves.flat(valid)[lo:hi])

    halves.pieces(mask.size, step)
    return data, valid


class Pyramid:
    """One frame's levels; thread-safe, built lazily, immutable once built."""

    def __init__(self, frame: Frame, meta: dict[str, Any]) -> None:
        data = frame.data
        self.op = max_op(data)
        self.saturation = reduce.saturation_level(frame)
        self.rule = rule_for(frame)
        valid: np.ndarray | None = None
        if self.rule == "mask":
            assert frame.mask is not None  # rule_for: "mask" only with a mask
            data, valid = at_floor(data, frame.mask, frame.scratch)
        self.meta = meta
        # h12levels: full-resolution level statistics of this frame (one small object; the
        # stage-1 value that crosses tier 2 carries it in its JSON header)
        self.level_stats: Any = None
        self._levels: dict[int, Level] = {0: Level(data, valid)}
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, int]:
        return self._levels[0].data.shape

    @property
    def nbytes(self) -> int:
        with self._lock:
            levels = list(self._levels.values())
        return 1024 + sum(v.nbytes for v in levels)

    def level(self, k: int) -> Level:
        """Level k, each missing level halved from the one below it (once): a cold request
        builds every level down to its own, so a later size or zoom finds its level built
        (each costs a quarter of the one before: 1.33 passes over the frame in all)."""
        with self._lock:
            j = max(i for i in self._levels if i <= k)
            while j < k:
                finer = self._levels[j]
                valid = None
                if finer.valid is not None:
                    valid = halve(finer.valid.view(np.uint8), np.maximum).view(bool)
                j += 1
                self._levels[j] = Level(halve(finer.data, self.op), valid)
            return self._levels[k]

    def reduce(
        self,
        xsize: int,
        ysize: int | None = None,
        zoom: float = 1.0,
        segcol: float = 0.0,
        segrow: float = 0.0,
    ) -> reduce.Reduced:
        """Stage 1 for one request: window, level, max-pool, validity, saturation, stats."""
        height, width = self.shape
        rows, cols = reduce.window(height, width, zoom, segcol, segrow)
        win_h, win_w = rows.stop - rows.start, cols.stop - cols.start
        dst_w, dst_h = reduce.output_size(win_w, win_h, xsize, ysize)
        k = level_for(win_w, win_h, dst_w, dst_h)
        level = self.level(k)
        rows_k = slice(rows.start >> k, -(-rows.stop >> k))  # the blocks the window touches
        cols_k = slice(cols.start >> k, -(-cols.stop >> k))
        plan_r = reduce.plan(rows_k.stop - rows_k.start, dst_h)
        plan_c = reduce.plan(cols_k.stop - cols_k.start, dst_w)
        data = pool_fine(level.data[rows_k, cols_k], plan_r, plan_c, self.op)
        if not data.flags.owndata:  # a view would pin the whole level in the cache
            data = data.copy()
        if level.valid is not None:  # the "mask" rule
            part = level.valid[rows_k, cols_k].view(np.uint8)
            valid = pool_fine(part, plan_r, plan_c, np.maximum).view(bool).copy()
        else:
            valid = valid_from_data(self.rule, data)
        saturated = saturated_boxes(self.rule, data, valid, self.saturation)
        stats = reduce.stats(data, valid, saturated)
        return reduce.Reduced(data=data, valid=valid, saturated=saturated, stats=stats)
