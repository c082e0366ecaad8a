"""Run one job inside the worker: validate, resolve the path, read, reduce, render.

The job dict comes from the procmgr, which is more trusted than the web side but still parsed
again here: the worker must not crash or misbehave on any input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyis_common.errors import BadRequest, Unsupported
from pyis_common.request import Request, parse
from worker import formats, paths, reduce, render


@dataclass(frozen=True)
class Settings:
    home: str
    quality: int = 90


@dataclass
class Result:
    job: dict[str, Any]  # what the server decided (wval_used, bval_used, xsize, ysize)
    meta: dict[str, Any]
    payloads: list[bytes] = field(default_factory=list)


def run(settings: Settings, job: Any) -> Result:
    if not isinstance(job, dict):
        raise BadRequest("job must be a JSON object")
    req = parse(job, need_pid=False)
    if req.type == "jpeg":
        return jpeg(settings, req)
    if req.type == "meta":
        path, _ = paths.resolve(settings.home, req.fn)
        return Result(job={}, meta=formats.read_meta(path))
    raise Unsupported(f"job type '{req.type}' is not served by this server yet")


def jpeg(settings: Settings, req: Request) -> Result:
    path, _ = paths.resolve(settings.home, req.fn)
    frame = formats.read_frame(path, req.frame)
    reduced = reduce.reduce_max(frame, req.xsize, req.ysize, req.zoom, req.segcol, req.segrow)
    data, decided = render.render(
        reduced, req.contrast, req.wval, req.label, req.label_height, settings.quality
    )
    meta = dict(frame.meta) | dict(reduced.stats)
    return Result(job=decided, meta=meta, payloads=[data])
