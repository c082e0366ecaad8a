"""``pixels``: the raw values of a small window around a detector pixel (the cursor readout).

Values come from level 0 of the frame's cached max-pyramid (the frame itself), so moving the
cursor never re-reads the file. A masked pixel (a module gap, a bad pixel) is ``null``: its
stored value is not a count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyis_common.errors import BadRequest
from pyis_common.request import Request
from pyis_common.request import _int as int_field  # the request's own integer rule
from worker import levelwindow
from worker.timings import Timings

if TYPE_CHECKING:
    from worker.jobs import Pipeline, Result

MAX_WINDOW = 32  # a cursor readout needs a handful of pixels; 32 x 32 is 1024 numbers


def run(pipe: Pipeline, req: Request, clock: Timings) -> Result:
    from worker.jobs import Result

    job: dict[str, Any] = req.raw
    x = int_field(job, "x", 0, 0, 1 << 20)
    y = int_field(job, "y", 0, 0, 1 << 20)
    size = int_field(job, "size", 1, 1, MAX_WINDOW)
    pyramid, _, tier = pipe.pyramid(req, clock)
    height, width = pyramid.shape
    if x >= width or y >= height:
        raise BadRequest(f"pixel ({x}, {y}) is outside the {width} x {height} frame")
    x0 = min(max(x - size // 2, 0), max(width - size, 0))
    y0 = min(max(y - size // 2, 0), max(height - size, 0))
    part = levelwindow.window(pyramid, 0, slice(y0, y0 + size), slice(x0, x0 + size))
    values, valid = part.data.tolist(), part.valid.tolist()
    rows = [
        [v if ok else None for v, ok in zip(vrow, okrow, strict=True)]
        for vrow, okrow in zip(values, valid, strict=True)
    ]
    meta = {"x0": x0, "y0": y0, "width": len(rows[0]), "height": len(rows), "values": rows}
    return Result(job={}, meta=meta, tier=tier)
