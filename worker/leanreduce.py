"""Stage 1 of a followed frame without building its pyramid: the pyramid's boxes, pooled from
the frame in one pass.

A frame followed live is shown once and superseded within a frame time, so its max-pyramid
(worker/pyramid.py: k halvings of the whole frame, then a pooling of level k) is work nobody
reuses, and the halvings read and write the frame several times over. The pyramid's output
pixel is the maximum of the level-k blocks its box covers, that is of those blocks' source
pixels: a box whose edges lie on the 2^k grid (the last one clipped at the frame's edge). So
rows are pooled straight from the frame over those edges (one read of the frame, as in
:func:`reduce.reduce_max`), then columns of the row-reduced array are halved k times and pooled
with the level's plan. A maximum does not depend on the order it is taken in: the picture is
the ``jpeg`` job's, pixel for pixel (tests/test_leanreduce.py).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from worker import reduce
from worker.formats import Frame
from worker.pyramid import at_floor, level_for, max_op, rule_for, valid_from_data


@lru_cache(maxsize=64)
def _rows_plan(height: int, start: int, stop: int, dst: int, k: int) -> tuple[int, reduce.Plan]:
    """The first source row of the pyramid's boxes for rows ``start:stop`` and their plan:
    each output row's box is whole level-k blocks, i.e. source rows on the 2^k grid."""
    low, high = start >> k, -(-stop >> k)  # the level's blocks the window touches
    level = reduce.plan(high - low, dst)
    if level.kind == "same":
        edges = np.arange(low, high + 1)
    else:  # down: a level is never sampled up (its blocks are no wider than a box)
        edges = low + (np.arange(dst + 1) * (high - low)) // dst
    edges = np.minimum(edges << k, height)
    starts, widths = edges[:-1] - edges[0], np.diff(edges)
    runs = reduce.grouped(starts, widths)
    return int(edges[0]), reduce.Plan("down", dst, starts=starts, runs=runs)


def _halve_cols(x: np.ndarray, op: np.ufunc) -> np.ndarray:
    """The maximum of each pair of columns, a lone last column kept (pyramid.halve, one axis)."""
    h, w = x.shape
    even = w - w % 2
    out = np.empty((h, (w + 1) // 2), x.dtype)
    op(x[:, 0:even:2], x[:, 1:even:2], out=out[:, : even // 2])
    if w % 2:
        out[:, -1] = x[:, -1]
    return out


def _pool(x: np.ndarray, rows: reduce.Plan, cols: slice, dst: int, k: int, op: np.ufunc):
    """Rows over the pyramid's boxes, then columns as the pyramid does: level-k blocks of the
    (now small) row-reduced array, pooled with the level's plan."""
    out = reduce.pool_rows(x, rows, op)[:, cols.start : cols.stop]
    for _ in range(k):
        out = _halve_cols(out, op)
    return reduce.pool_cols(out, reduce.plan(out.shape[1], dst), op)


def reduce_like_pyramid(
    frame: Frame,
    xsize: int,
    ysize: int | None = None,
    zoom: float = 1.0,
    segcol: float = 0.0,
    segrow: float = 0.0,
) -> reduce.Reduced:
    """What ``Pyramid(frame, meta).reduce(...)`` returns, without the pyramid. May write the
    masked pixels' floor into ``frame.data`` when it is ``scratch`` (as the pyramid does)."""
    height, width = frame.data.shape
    rows, cols = reduce.window(height, width, zoom, segcol, segrow)
    win_h, win_w = rows.stop - rows.start, cols.stop - cols.start
    dst_w, dst_h = reduce.output_size(win_w, win_h, xsize, ysize)
    k = level_for(win_w, win_h, dst_w, dst_h)
    if k == 0:  # level 0 is the frame: the pyramid's boxes are reduce_max's
        return reduce.reduce_max(frame, xsize, ysize, zoom, segcol, segrow)
    first, plan_r = _rows_plan(height, rows.start, rows.stop, dst_h, k)
    source = frame.data[first:]
    col_k = slice(cols.start >> k << k, min(-(-cols.stop >> k) << k, width))
    op, rule = max_op(source), rule_for(frame)
    if rule != "mask":
        data = _pool(source, plan_r, col_k, dst_w, k, op)
        valid = valid_from_data(rule, data)
    else:  # masked pixels at the floor, validity pooled apart, as the pyramid's levels
        assert frame.mask is not None  # rule_for: "mask" only with a mask
        source, valid_px = at_floor(source, frame.mask[first:], frame.scratch)
        data = _pool(source, plan_r, col_k, dst_w, k, op)
        valid = _pool(valid_px.view(np.uint8), plan_r, col_k, dst_w, k, np.maximum).view(bool)
    if not data.flags.owndata:
        data = data.copy()
    saturated = valid & (data >= reduce.saturation_level(frame))
    stats = reduce.stats(data, valid, saturated)
    return reduce.Reduced(data=data, valid=valid, saturated=saturated, stats=stats)
