"""``tile``: one square JPEG tile of a frame at a power-of-two level, for the viewer's deep zoom.

Level ``s`` is the frame max-pooled over 2^s x 2^s blocks (partial blocks at the right and
bottom edges), the pyramid DESIGN.md section 6 describes; tile (col, row) is the TILE x TILE
window of that level starting at (col * TILE, row * TILE). A block's value is the maximum of its
valid pixels, so a one-pixel spot keeps its full value at every level. Parts of a tile past the
frame's edge are invalid (drawn like gaps). Levels (contrast, wval) are the frame's: explicit
values from the viewer (the levels of its overview image), else automatic from the full frame,
so neighbouring tiles always agree.

The blocks are cut from the full-resolution stage-1 entry (:mod:`worker.fullres`), not yet from
the cached pyramid levels: a coarse tile costs a max over its whole window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pyis_common.request import Request
from pyis_common.request import _int as int_field  # the request's own integer rule
from worker import fullres, reduce, render

if TYPE_CHECKING:
    from worker.jobs import Pipeline, Result

TILE = 256  # Leaflet's default tile size: 256 x 256 pixels of the level
MAX_LEVEL = 8  # 2^8 * 256 = 65536 px: wider than any detector


def block_max(
    data: np.ndarray, valid: np.ndarray, saturated: np.ndarray, factor: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Max of the valid pixels of each factor x factor block (partial blocks at the right and
    bottom edges); a block is valid (saturated) when any of its pixels is."""
    if factor == 1:
        return data, valid, saturated
    op = np.fmax if data.dtype.kind == "f" else np.maximum
    flags = (_pool(m.view(np.uint8), factor, np.maximum).view(bool) for m in (valid, saturated))
    return _pool(data, factor, op), *flags


def _pool(x: np.ndarray, factor: int, op: np.ufunc) -> np.ndarray:
    """Rows first (a reduce over whole rows of a view: no copy of the window), then columns of
    the factor-times smaller result; edges padded by repeating the last column, which changes
    no maximum. 8x faster than one reduce over a padded 4-D view."""
    h, w = x.shape
    whole = h - h % factor
    parts = [op.reduce(x[:whole].reshape(whole // factor, factor, w), axis=1)] if whole else []
    if whole < h:
        parts.append(op.reduce(x[whole:], axis=0, keepdims=True))
    rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if w % factor:
        rows = np.pad(rows, ((0, 0), (0, -w % factor)), mode="edge")
    return op.reduce(rows.reshape(rows.shape[0], -1, factor), axis=2)


def cut(full: reduce.Reduced, level: int, col: int, row: int) -> reduce.Reduced:
    """The TILE x TILE reduction of tile (col, row) at ``level``; empty past the frame."""
    factor = 1 << level
    span = TILE * factor
    y0, x0 = row * span, col * span
    src = (slice(y0, y0 + span), slice(x0, x0 + span))
    out_data = np.zeros((TILE, TILE), full.data.dtype)
    out_valid = np.zeros((TILE, TILE), bool)
    out_sat = np.zeros((TILE, TILE), bool)
    if full.data[src].size:  # else the tile lies wholly past the frame: all invalid
        data, valid, sat = block_max(full.data[src], full.valid[src], full.saturated[src], factor)
        h, w = data.shape
        out_data[:h, :w], out_valid[:h, :w], out_sat[:h, :w] = data, valid, sat
    return reduce.Reduced(out_data, out_valid, out_sat, stats={})


def run(pipe: Pipeline, req: Request) -> Result:
    from worker.jobs import Result

    job: dict[str, Any] = req.raw
    level = int_field(job, "level", 0, 0, MAX_LEVEL)
    col = int_field(job, "col", 0, 0, 1 << 16)
    row = int_field(job, "row", 0, 0, 1 << 16)
    stage1, tier = fullres.full_frame(pipe, req)
    auto = stage1.meta.get("auto_levels")
    white, black = render.levels(stage1.reduced.stats, req.contrast, req.wval, auto)
    tile = cut(stage1.reduced, level, col, row)
    data, decided = render.render(tile, black, white, quality=pipe.quality)
    meta = {"level": level, "col": col, "row": row, "tile": TILE}
    return Result(job=decided, meta=meta, payloads=[data], tier=tier)
