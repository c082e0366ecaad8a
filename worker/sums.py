"""``sum`` on ``jpeg`` and ``tile``: k consecutive frames added at full depth before reduction.

Fine-sliced data (0.01-0.1 degree Eiger frames) shows spots only when a few frames are added
(users ask for it: dials#660). Frames ``frame .. frame+k-1`` of one file are read and added in
int64 (float64 for float data); a pixel masked in any frame is masked in the sum, and a pixel
saturated in any frame stays saturated (it is set to the sum's saturation level, k times the
detector's), so a summed image is never brighter than its parts can honestly say. The sum's
pyramid is cached in tier 1 beside the frames' own (never in tier 2: sums are one user's view).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import numpy as np

from pyis_common.errors import BadRequest
from pyis_common.request import Request
from pyis_common.request import _int as int_field  # the request's own integer rule
from worker import formats, levelrule, levels, paths, reduce, render
from worker.formats import Frame
from worker.pyramid import Pyramid
from worker.timings import Timings

if TYPE_CHECKING:
    from worker.jobs import Pipeline, Result

MAX_SUM = 100  # frames per sum: 100 x 0.1 degree is a 10 degree wedge


def count(req: Request) -> int:
    return int_field(req.raw, "sum", 1, 1, MAX_SUM)


def _mask(frame: Frame) -> np.ndarray | None:
    if frame.negative_masked:
        return frame.data < 0
    if frame.data.dtype.kind == "f":
        nan = np.isnan(frame.data)
        return nan if frame.mask is None else frame.mask | nan
    return frame.mask


def summed(src: paths.Opened, first: int, k: int) -> Frame:
    """Frames first .. first+k-1 of ``src`` added, with masks and saturation kept."""
    frame = formats.read_frame(src, first)
    floats = frame.data.dtype.kind == "f"
    total = frame.data.astype(np.float64 if floats else np.int64)
    level = reduce.saturation_level(frame)
    saturated = frame.data >= level
    mask = _mask(frame)
    for number in range(first + 1, first + k):
        more = formats.read_frame(src, number)
        if more.data.shape != total.shape:
            raise BadRequest(f"frame {number} has another shape than frame {first}")
        total += more.data
        saturated |= more.data >= level
        extra = _mask(more)
        if extra is not None:
            mask = extra if mask is None else mask | extra
    ceiling = level * k if math.isfinite(level) else math.inf
    if math.isfinite(ceiling):
        total[saturated] = ceiling
    if mask is not None:
        total[mask] = 0
    meta = dict(frame.meta) | {"sum": k, "last_summed_frame": first + k - 1}
    return Frame(data=total, mask=mask, saturation=ceiling, meta=meta, scratch=True)


def pyramid(pipe: Pipeline, req: Request, clock: Timings) -> tuple[Pyramid, Hashable, str]:
    """The pyramid of ``req``'s frame, or of its sum when ``sum`` > 1 (cached in tier 1), its
    LRU key (resize it after building a level) and where it came from."""
    k = count(req)
    if k == 1:
        return pipe.pyramid(req, clock)
    with paths.resolve(pipe.home, req.fn) as src:
        st = src.stat()
        key = (
            "sum",
            pipe.esaf,
            src.name,
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            req.frame,
            k,
        )
        cached = pipe.lru.get(key)
        if isinstance(cached, Pyramid):
            return cached, key, "pyramid"

        def build() -> Pyramid:
            with clock.step("read"):
                frame = summed(src, req.frame, k)
            with clock.step("reduce"):  # the sum's own automatic levels, before it is pooled
                stats = levels.compute(frame, reduce.saturation_level(frame))
                built = Pyramid(frame, dict(frame.meta))
            built.level_stats = stats
            return built

        built, led = pipe.reads.run(key, build)
        now = src.stat()
        if (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns):  # not mid-write
            pipe.lru.put(key, built, built.nbytes)
        return built, key, "file" if led else "flight"


def stage1(
    pipe: Pipeline, req: Request, clock: Timings
) -> tuple[reduce.Reduced, dict[str, Any], Any, str]:
    """Stage 1 of the sum for ``req`` (``jpeg`` and ``counts`` alike): the reduction from the
    sum's pyramid, the reply's meta, the sum's own level statistics and the tier it came from."""
    found, key, tier = pyramid(pipe, req, clock)
    with clock.step("reduce"):
        out = found.reduce(req.xsize, req.ysize, req.zoom, req.segcol, req.segrow)
    pipe.lru.resize(key, found.nbytes)  # it may have built a level
    return out, found.meta | dict(out.stats), found.level_stats, tier


def jpeg(pipe: Pipeline, req: Request, clock: Timings) -> Result:
    """A ``jpeg`` of the sum: reduced from the sum's pyramid, drawn by the ``jpeg`` levels rule
    (the sum's own automatic levels by default), scale and colour map."""
    from worker.jobs import Result

    reduced, meta, stats, tier = stage1(pipe, req, clock)
    choice = levelrule.choose(
        req, stats, reduced.stats, meta.get("auto_levels"), pipe.level_rule,
        levelrule.zoomed(req), reduced.data.shape,
    )  # fmt: skip
    data, decided = render.render(
        reduced, choice.black, choice.white, quality=pipe.quality, clock=clock,
        planes=choice.planes and choice.planes(), scale=req.scale, colormap=req.colormap,
    )  # fmt: skip
    return Result(job=decided, meta=meta, payloads=[data], tier=tier)
