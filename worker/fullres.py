"""The frame at full resolution and full depth, as one stage-1 cache entry.

The viewer's ``tile`` and ``pixels`` jobs cut small windows out of one frame many times over:
they share this entry (a stage-1 reduction to the frame's own size, i.e. the frame with its
validity and saturation masks) instead of reading the file for each tile or cursor move. When
the max-pyramid lands in the caches, tiles come from its levels instead; until then this is
their level 0.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING

from pyis_common.request import Request
from worker import formats, paths

if TYPE_CHECKING:
    from worker.jobs import Pipeline, Stage1

MAX_DIMS = 512  # remembered frame sizes (a few bytes each): one per file a viewer opened

_dims: dict[tuple[str, int, int, int, int], tuple[int, int]] = {}
_dims_lock = threading.Lock()


def frame_size(home: str, fn: str | None) -> tuple[int, int]:
    """(width, height) from the header, remembered per file identity (a rewrite re-reads it)."""
    path, st = paths.resolve(home, fn)
    ident = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _dims_lock:
        hit = _dims.get(ident)
    if hit is not None:
        return hit
    meta = formats.read_meta(path)
    size = int(meta["x_pixels_in_detector"]), int(meta["y_pixels_in_detector"])
    with _dims_lock:
        if len(_dims) >= MAX_DIMS:
            _dims.clear()
        _dims[ident] = size
    return size


def full_frame(pipe: Pipeline, req: Request) -> tuple[Stage1, str]:
    """The full-resolution stage-1 entry of ``req``'s file and frame, and where it came from."""
    width, height = frame_size(pipe.home, req.fn)
    full = dataclasses.replace(req, xsize=width, ysize=height, zoom=1.0, segcol=0.0, segrow=0.0)
    stage1, _, tier = pipe.stage1(full)
    return stage1, tier
