"""``tile``: one square JPEG tile of a frame at a power-of-two level, for the viewer's deep zoom.

Level ``s`` of the frame's max-pyramid (worker/pyramid.py: the frame max-pooled over
2^s x 2^s blocks, partial blocks at the right and bottom edges); tile (col, row) is the
TILE x TILE square of that level starting at (col * TILE, row * TILE). A block's value is the
maximum of its valid pixels, so a one-pixel spot keeps its full value at every level. Parts of
a tile past the frame's edge are invalid (drawn like gaps). Levels, scale and colour map follow
the ``jpeg`` rule: explicit values from the viewer, else the frame's automatic levels at each
pixel's place, so neighbouring tiles and the overview always agree.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from pyis_common.request import Request
from pyis_common.request import _int as int_field  # the request's own integer rule
from worker import levelrule, levelwindow, reduce, render, sums
from worker.levelrule import Choice
from worker.pyramid import Pyramid
from worker.timings import Timings, since_ms

if TYPE_CHECKING:
    from worker.jobs import Pipeline, Result

TILE = 256  # Leaflet's default tile size: 256 x 256 pixels of the level
OVERVIEW_PX = 512  # the viewer's overview image: the C rule's levels come from it
Square = tuple[int, int, int]  # (level, col, row)
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


def frame_levels(pipe: Pipeline, req: Request, pyramid: Pyramid, square: Square) -> Choice:
    """The jpeg rule's levels (worker/levelrule.py) at this tile's place: the frame's automatic
    levels by default, so a tile and the overview agree pixel for pixel; under the C rule the
    mean +- stddev of the frame's default 512 px ``jpeg`` image (the viewer's overview)."""
    level, col, row = square
    span = TILE << level
    rows, cols = slice(row * span, (row + 1) * span), slice(col * span, (col + 1) * span)
    auto = pyramid.meta.get("auto_levels")
    overview: dict[str, Any] = {}
    if not levelrule.uses_planes(req, pyramid.level_stats, auto, pipe.level_rule):
        overview = pyramid.reduce(OVERVIEW_PX, None, 1.0, 0.0, 0.0).stats
    return levelrule.choose(
        req, pyramid.level_stats, overview, auto, pipe.level_rule,
        lambda _hw: (rows, cols), (TILE, TILE),
    )  # fmt: skip


def run(pipe: Pipeline, req: Request, clock: Timings) -> Result:
    from worker.jobs import Result

    job: dict[str, Any] = req.raw
    level = int_field(job, "level", 0, 0, MAX_LEVEL)
    col = int_field(job, "col", 0, 0, 1 << 16)
    row = int_field(job, "row", 0, 0, 1 << 16)
    pyramid, key, tier = sums.pyramid(pipe, req, clock)
    with clock.step("reduce"):
        tile = cut(pyramid, level, col, row)
        choice = frame_levels(pipe, req, pyramid, (level, col, row))
    pipe.lru.resize(key, pyramid.nbytes)  # the cut may have built a level
    t0, encoded = time.perf_counter(), clock.ms["encode"]
    data, decided = render.render(
        tile, choice.black, choice.white, quality=pipe.quality, clock=clock,
        planes=choice.planes and choice.planes(), scale=req.scale, colormap=req.colormap,
    )  # fmt: skip
    clock.add("map", since_ms(t0) - (clock.ms["encode"] - encoded))
    meta = {"level": level, "col": col, "row": row, "tile": TILE}
    return Result(job=decided, meta=meta, payloads=[data], tier=tier)
