"""``counts``: a ``jpeg`` request's reduced image at full depth, for the viewer's own contrast.

The viewer shows a frame's overview as the server's JPEG, then fetches the same reduction (the
same stage-1 value, so it is a cache hit) as numbers: a contrast, white level, scale or colour
map change is then mapped in the page (isweb/static/js/mapping.js, the tables of
pyis_common/colortables.py) with no request. The payload is little-endian, row-major:

- the values, ``dtype`` ``u1``, ``u2``, ``i4`` (integer counts, the narrowest that holds them:
  the page converts them to float32 as numpy does) or ``f4`` (float data: the float32 the
  worker's map starts from, ``data.astype(float32)``), masked pixels 0;
- ``valid``: one bit per pixel (``packbits``, little bit order), 0 where the box was masked;
- ``red``: the same for saturated pixels, present only when ``meta.counts.red`` is true
  (the worker draws red only when the reduction counts saturated pixels).

``meta.counts`` holds ``dtype``, ``width``, ``height``, ``red`` and ``auto``: the automatic levels
the ``jpeg`` of the same request draws, so the page can draw a new scale or colour map under them
too: ``{"pair": [white, black]}`` (a DICOM window or the C rule: scalars), or ``{"grid": ...}``
(worker/levels.py ``LevelStats.to_json``: the per-block levels the worker interpolates into a
white and a black plane over the frame). The rest of meta is the ``jpeg`` reply's. Bounded: at
most :data:`MAX_SIDE` pixels a side (the viewer's overview is at most 2048; tiles carry the
rest), so a reply is at most 16 MiB before HTTP compression.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pyis_common.errors import BadRequest
from pyis_common.request import Request
from worker import levelrule, reduce, sums
from worker.timings import Timings

if TYPE_CHECKING:
    from worker.jobs import Pipeline, Result

MAX_SIDE = 2048


def _check(width: int, height: int) -> None:
    if width > MAX_SIDE or height > MAX_SIDE:
        raise BadRequest(f"counts are sent for at most {MAX_SIDE} x {MAX_SIDE} pixels")


def dtype_of(reduced: reduce.Reduced) -> str:
    """The narrowest of u1, u2, i4 and f4 that holds every valid value exactly (integers are
    compressed faster and smaller than their float32)."""
    lo, hi = reduced.stats.get("min"), reduced.stats.get("max")
    if reduced.data.dtype.kind not in "iu" or lo is None or hi is None:
        return "f4"
    if lo >= 0 and hi <= 0xFF:
        return "u1"
    if lo >= 0 and hi <= 0xFFFF:
        return "u2"
    return "i4" if -(2**31) <= lo and hi < 2**31 else "f4"


def pack(reduced: reduce.Reduced) -> tuple[bytes, dict[str, Any]]:
    """The payload and its layout (``meta.counts``)."""
    height, width = reduced.data.shape
    kind = dtype_of(reduced)
    values = reduced.data.astype(np.float32 if kind == "f4" else "<" + kind)
    if not reduced.valid.all():
        values[~reduced.valid] = 0
    red = bool(reduced.stats.get("nSaturated", 1)) and bool(reduced.saturated.any())
    parts = [values.astype("<" + kind, copy=False).tobytes()]
    parts.append(np.packbits(reduced.valid, axis=None, bitorder="little").tobytes())
    if red:
        parts.append(np.packbits(reduced.saturated, axis=None, bitorder="little").tobytes())
    return b"".join(parts), {"dtype": kind, "width": width, "height": height, "red": red}


def run(pipe: Pipeline, req: Request, clock: Timings) -> Result:
    from worker.jobs import Result

    _check(req.xsize, req.ysize or 0)
    if sums.count(req) > 1:
        reduced, meta, stats, tier = sums.stage1(pipe, req, clock)
    else:
        stage1, _, tier = pipe.stage1(req, clock)  # the jpeg's own stage 1: a cache hit
        reduced, meta, stats = stage1.reduced, dict(stage1.meta), stage1.level_stats
    height, width = reduced.data.shape
    _check(width, height)  # a height derived from the aspect ratio obeys it too
    with clock.step("encode"):
        payload, layout = pack(reduced)
    choice = levelrule.choose(
        req, stats, reduced.stats, meta.get("auto_levels"), pipe.level_rule,
        levelrule.zoomed(req), reduced.data.shape,
    )  # fmt: skip
    if choice.planes is None or stats is None:
        layout["auto"] = {"pair": [choice.white, choice.black]}
    else:
        layout["auto"] = {"grid": stats.to_json()}
    decided = {"xsize": width, "ysize": height}
    return Result(job=decided, meta=meta | {"counts": layout}, payloads=[payload], tier=tier)
