"""``tile``: one square JPEG tile of a frame at a power-of-two level, for the viewer's deep zoom.

Level ``s`` of the frame's max-pyramid (worker/pyramid.py: the frame max-pooled over
2^s x 2^s blocks, partial blocks at the right and bottom edges); tile (col, row) is the
TILE x TILE square of that level starting at (col * TILE, row * TILE). A block's value is the
maximum of its valid pixels, so a one-pixel spot keeps its full value at every level. Parts of
a tile past the frame's edge are invalid (drawn like gaps). Levels (contrast, wval) are the
frame's: explicit values from the viewer (the levels of its overview image), else the automatic
levels of that overview, so neighbouring tiles always agree.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from pyis_common.request import Request
from pyis_common.request import _int as int_field  # the request's own integer rule
from worker import levelwindow, reduce, render, sums
from worker.pyramid import Pyramid
from worker.timings import Timings

if TYPE_CHECKING:
    from worker.jobs import Pipeline, Result

TILE = 256  # Leaflet's default tile size: 256 x 256 pixels of the level
MAX_LEVEL = 8  # 2^8 * 256 = 65536 px: wider than any detector


def cut(pyramid: Pyramid, level: int, col: int, row: int) -> reduce.Reduced:
    """The TILE x TILE square (col, row) of ``level``; invalid (white) past the frame."""
    height, width = pyramid.level(level).data.shape
    y0, x0 = min(row * TILE, height), min(col * TILE, width)
    part = levelwindow.window(pyramid, level, slice(y0, y0 + TILE), slice(x0, x0 + TILE))
    if part.data.shape == (TILE, TILE):
        return part
    h, w = part.data.shape
    data = np.zeros((TILE, TILE), part.data.dtype)
    valid, saturated = np.zeros((TILE, TILE), bool), np.zeros((TILE, TILE), bool)
    data[:h, :w], valid[:h, :w], saturated[:h, :w] = part.data, part.valid, part.saturated
    return reduce.Reduced(data, valid, saturated, stats={})


def frame_levels(pipe: Pipeline, req: Request, clock: Timings) -> tuple[float, float]:
    """(white, black): the request's own, else the automatic levels of the frame's default
    ``jpeg`` image (the viewer's overview), so tiles and overview agree."""
    if req.contrast > 0 and req.wval >= 0:
        return render.levels({}, req.contrast, req.wval)
    overview = dataclasses.replace(req, xsize=512, ysize=None, zoom=1.0, segcol=0.0, segrow=0.0)
    if sums.count(req) > 1:
        reply = sums.jpeg(pipe, overview, clock).job
        return reply["wval_used"], reply["bval_used"]
    stage1, _, _ = pipe.stage1(overview, clock)
    auto = stage1.meta.get("auto_levels")
    return render.levels(stage1.reduced.stats, req.contrast, req.wval, auto)


def run(pipe: Pipeline, req: Request, clock: Timings) -> Result:
    from worker.jobs import Result

    job: dict[str, Any] = req.raw
    level = int_field(job, "level", 0, 0, MAX_LEVEL)
    col = int_field(job, "col", 0, 0, 1 << 16)
    row = int_field(job, "row", 0, 0, 1 << 16)
    white, black = frame_levels(pipe, req, clock)
    pyramid, key, tier = sums.pyramid(pipe, req, clock)
    with clock.step("reduce"):
        tile = cut(pyramid, level, col, row)
    pipe.lru.resize(key, pyramid.nbytes)  # the cut may have built a level
    data, decided = render.render(tile, black, white, quality=pipe.quality, clock=clock)
    meta = {"level": level, "col": col, "row": row, "tile": TILE}
    return Result(job=decided, meta=meta, payloads=[data], tier=tier)
