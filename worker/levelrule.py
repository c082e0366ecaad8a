"""Which levels a picture is drawn with: one rule for ``jpeg``, ``tile`` and ``sum``.

A request's explicit ``contrast``/``wval`` win; a DICOM window (``auto_levels`` in meta) or the
C rule (request ``levels: "c"``, else the configured rule) uses mean +- stddev of the reduced
image; otherwise the frame's own automatic levels (worker/levels.py) are drawn per output
pixel by interpolated planes. A tile, an overview and a summed picture of one frame thus get
the same levels at the same detector position, whatever their size or zoom.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyis_common.request import Request
from worker import reduce, render
from worker.levels import LevelStats

Planes = Callable[[], tuple[np.ndarray, np.ndarray]]
Window = Callable[[tuple[int, int]], tuple[slice, slice]]  # frame (h, w) -> rows, cols shown


@dataclass(frozen=True)
class Choice:
    """The pair reported as ``wval_used``/``bval_used`` and, for automatic levels, the
    per-pixel planes (made only when the picture is drawn, so a cached JPEG costs none)."""

    white: float
    black: float
    planes: Planes | None = None


def uses_planes(req: Request, stats: LevelStats | None, auto: Any, configured: str) -> bool:
    """Whether ``req`` is drawn with the frame's automatic levels (else the C rule, a DICOM
    window or explicit levels). A missing ``wval`` is automatic with an automatic ``contrast``
    (the C server read it as 0, which draws an offset detector's frame black)."""
    rule = req.levels or configured
    return not (rule == "c" or auto is not None or stats is None) and (
        _auto_black(req) or _auto_white(req)
    )


def _auto_black(req: Request) -> bool:
    return req.contrast <= 0


def _auto_white(req: Request) -> bool:
    return req.wval < 0 or (_auto_black(req) and "wval" not in req.raw)


def zoomed(req: Request) -> Window:
    """The window a ``jpeg`` request's zoom and segment show."""
    return lambda hw: reduce.window(*hw, req.zoom, req.segcol, req.segrow)


def choose(
    req: Request,
    stats: LevelStats | None,
    reduced_stats: dict[str, Any],
    auto: Any,
    configured: str,
    window: Window,
    shape: tuple[int, int],
) -> Choice:
    """The levels of ``req`` for an output of ``shape`` pixels showing the frame's rows and
    columns ``window`` names; ``reduced_stats`` (mean, stddev) feed the C rule, ``auto`` is
    a file's own display window, ``configured`` the server's rule."""
    if not uses_planes(req, stats, auto, configured):
        white, black = render.levels(reduced_stats, req.contrast, req.wval, auto)
        return Choice(white, black)
    assert stats is not None  # uses_planes() said so
    auto_white, auto_black = _auto_white(req), _auto_black(req)
    white = stats.white if auto_white else req.wval
    black = stats.black if auto_black else max(req.contrast, white + 1.0)
    rows, cols = window(stats.shape)

    def planes() -> tuple[np.ndarray, np.ndarray]:
        low, high = stats.planes(rows, cols, shape)
        if not auto_white:
            low = np.full_like(low, white)
        if not auto_black:
            high = np.full_like(high, black)
        return low, np.maximum(high, low + np.float32(1e-6))

    return Choice(white, black, planes)
