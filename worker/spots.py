"""The ``spots`` job: a quick count of bright pixels per resolution ring, for the beamline's
"is there diffraction?" view (the C server's ``isSpots``, ORIGINAL.md section 8).

The whole image is max-pooled to a fixed :data:`WIDTH` (512 px wide, or the frame's own
width when it is narrower), whatever ``xsize`` the request names: the C server counted on the
``xsize`` reduction, so the same frame gave 82, 192 and 875 spots at 128, 384 and 1024 px.
Around the beam centre, r**2 from the nearest to the farthest reduced pixel is cut into 16 bins
of equal r**2 width (equal areas while the rings are whole), and a spot is a valid pixel whose
value exceeds its bin's mean by 1.5 times the bin's rms (the C server's sensitivity, and its
rms rather than standard deviation). Each bin also reports the d-spacings (Angstrom) its pixels
span, from the geometry keys (:mod:`worker.geometry`), when the header has them.

Wire: ``meta.spots`` is the total, one integer, as the C server sent it; ``spots_per_bin`` the
16 counts, ``spots_bin_d_A`` 16 pairs [largest d, smallest d] (null for the bin holding the
beam's infinite d, or every pair null without a geometry).

Fixed against the C server: no division by zero when all pixels share one r**2 (a one-pixel
image), masked pixels are never counted, and a header without a beam centre uses the image
centre (the C server's worker died).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from pyis_common.request import Request
from worker import geometry
from worker.reduce import Reduced

BINS = 16
SENSITIVITY = 1.5  # IS_SPOT_SENSITIVITY: value - mean > 1.5 * rms
STRIP_PIXELS = 1 << 20  # rows per pass so a 10000 px wide reduction never makes 800 MB of r**2
# the reduction counted on: a 6M Pilatus in 5x5 pixel boxes, and the same stage-1 entry as the
# default 512 px picture, so spots after a first look is a cache hit (1024 px took 4x longer)
WIDTH = 512
CIRCLE_SAMPLES = 2048  # points per bin circle when looking for a bin's d range


def full_image(req: Request, width: int = WIDTH) -> Request:
    """The request spots reduce with: the whole image (as the C server forced it) at the fixed
    counting width, never the request's ``xsize``."""
    return dataclasses.replace(req, zoom=1.0, segcol=0.0, segrow=0.0, xsize=width, ysize=None)


def beam(meta: dict[str, Any], shape: tuple[int, int]) -> tuple[float, float, bool]:
    """Beam centre in reduced pixels (x, y), and whether it was guessed (image centre)."""
    h, w = shape
    full_w = float(meta.get("x_pixels_in_detector") or w)
    full_h = float(meta.get("y_pixels_in_detector") or h)
    x, y = meta.get("beam_center_x"), meta.get("beam_center_y")
    if isinstance(x, int | float) and isinstance(y, int | float):
        bx, by, guessed = float(x), float(y), False
    else:
        bx, by, guessed = full_w / 2, full_h / 2, True
    return bx * w / full_w, by * h / full_h, guessed


def _bins(dy2: np.ndarray, dx2: np.ndarray, low: float, high: float) -> np.ndarray:
    """Bin of each pixel of a strip: floor(16 (r2 - low) / (high - low)), clipped to 0..15."""
    r2 = dy2[:, None] + dx2[None, :]
    if high <= low:  # every pixel at the same r**2 (one pixel, or one pixel wide on the beam)
        return np.zeros(r2.shape, np.intp)
    index = ((r2 - low) * (BINS / (high - low))).astype(np.intp)
    return np.minimum(index, BINS - 1, out=index)


def _strips(
    reduced: Reduced, dy2: np.ndarray, dx2: np.ndarray, low: float, high: float
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(bin, value) of the valid pixels, a strip of rows at a time."""
    step = max(1, STRIP_PIXELS // reduced.data.shape[1])
    for r in range(0, reduced.data.shape[0], step):
        valid = reduced.valid[r : r + step]
        index = _bins(dy2[r : r + step], dx2, low, high)[valid]
        yield index, reduced.data[r : r + step][valid].astype(np.float64)


def count(reduced: Reduced, cx: float, cy: float) -> list[int]:
    """Spots per r**2 bin around (cx, cy), reduced pixel coordinates (pixel centres at +0.5).

    Two passes over strips of rows: per-bin sums first, then the pixels above threshold.
    """
    h, w = reduced.data.shape
    dy2 = (np.arange(h) + 0.5 - cy) ** 2
    dx2 = (np.arange(w) + 0.5 - cx) ** 2
    low, high = float(dy2.min() + dx2.min()), float(dy2.max() + dx2.max())
    n, total, square = np.zeros(BINS), np.zeros(BINS), np.zeros(BINS)
    for index, values in _strips(reduced, dy2, dx2, low, high):
        n += np.bincount(index, minlength=BINS)
        total += np.bincount(index, values, minlength=BINS)
        square += np.bincount(index, values * values, minlength=BINS)
    seen = np.maximum(n, 1.0)
    mean, rms = total / seen, np.sqrt(square / seen)
    counts = np.zeros(BINS, np.int64)
    for index, values in _strips(reduced, dy2, dx2, low, high):
        bright = values - mean[index] > SENSITIVITY * rms[index]
        counts += np.bincount(index[bright], minlength=BINS)
    return [int(c) for c in counts]


def _outline(w: int, h: int, cx: float, cy: float, radii: np.ndarray) -> tuple[np.ndarray, ...]:
    """Points (x, y, k) on every bin's border: circle k of the bin edges (k = -1: a point of
    the image's outline), within the rectangle of the pixel centres, the points binned."""
    angle = np.linspace(0.0, 2 * np.pi, CIRCLE_SAMPLES, endpoint=False)
    xs = [cx + radii[:, None] * np.cos(angle)]
    ys = [cy + radii[:, None] * np.sin(angle)]
    circle = np.repeat(np.arange(radii.size), CIRCLE_SAMPLES).reshape(radii.size, -1)
    left, right, top, bottom = 0.5, w - 0.5, 0.5, h - 0.5
    along_x = np.linspace(left, right, 4 * w - 3)
    along_y = np.linspace(top, bottom, 4 * h - 3)
    for x, y in ((along_x, 0.0 * along_x + top), (along_x, 0.0 * along_x + bottom)):
        xs.append(x[None, :])
        ys.append(y[None, :])
    for x, y in ((0.0 * along_y + left, along_y), (0.0 * along_y + right, along_y)):
        xs.append(x[None, :])
        ys.append(y[None, :])
    x, y = np.concatenate([a.ravel() for a in xs]), np.concatenate([a.ravel() for a in ys])
    k = np.concatenate([circle.ravel(), np.full(x.size - circle.size, -1)])
    inside = (x >= left) & (x <= right) & (y >= top) & (y <= bottom)
    return x[inside], y[inside], k[inside]


def d_ranges(
    meta: dict[str, Any], shape: tuple[int, int], cx: float, cy: float
) -> list[list[float | None] | None]:
    """[largest, smallest] d (Angstrom) over each bin's part of the detector (the rectangle of
    the reduced pixel centres, which the bins are made of); None without a geometry, and null
    for the infinite d when the direct beam falls in the bin.

    d has no extremum inside a region except the direct beam (infinite d), so each bin's range
    is found on its border: its two circles inside the image and the image edges it touches,
    sampled finely (a few thousand points, not the million pixels)."""
    found = geometry.from_meta(meta)
    h, w = shape
    if found is None:
        return [None] * BINS
    sx = float(meta.get("x_pixels_in_detector") or w) / w  # detector pixels per reduced pixel
    sy = float(meta.get("y_pixels_in_detector") or h) / h
    dy2, dx2 = (np.arange(h) + 0.5 - cy) ** 2, (np.arange(w) + 0.5 - cx) ** 2
    low, high = float(dy2.min() + dx2.min()), float(dy2.max() + dx2.max())
    edges = low + (high - low) * np.arange(BINS + 1) / BINS
    x, y, k = _outline(w, h, cx, cy, np.sqrt(edges))
    d = found.d_spacing(x * sx, y * sy)
    r2 = (x - cx) ** 2 + (y - cy) ** 2
    on_edge = _bins(np.zeros(1), r2, low, high)[0]
    most, least = np.full(BINS, -np.inf), np.full(BINS, np.inf)
    for b in range(BINS):
        picked = d[((k == -1) & (on_edge == b)) | (k == b) | (k == b + 1)]
        if picked.size:
            most[b], least[b] = picked.max(), picked.min()
    bx, by = found.direct_beam_px()
    if 0 <= bx / sx <= w and 0 <= by / sy <= h:
        most[
            _bins(np.zeros(1), np.array([(bx / sx - cx) ** 2 + (by / sy - cy) ** 2]), low, high)[
                0, 0
            ]
        ] = np.inf
    out: list[list[float | None] | None] = []
    for big, small in zip(most.tolist(), least.tolist(), strict=True):
        if not np.isfinite(small):
            out.append(None)
        else:
            out.append([round(big, 3) if np.isfinite(big) else None, round(small, 3)])
    return out


def reply(reduced: Reduced, meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(job decided, meta) of a spots reply; no picture goes with it."""
    h, w = reduced.data.shape
    cx, cy, guessed = beam(meta, (h, w))
    per_bin = count(reduced, cx, cy)
    found = {
        "spots": sum(per_bin),  # one integer, as the C server sent it
        "spots_per_bin": per_bin,
        "spots_bin_d_A": d_ranges(meta, (h, w), cx, cy),
        "spots_beam_x": cx,
        "spots_beam_y": cy,
        "spots_beam_guessed": guessed,
    }
    job = {"xsize": w, "ysize": h, "segcol": 0.0, "segrow": 0.0, "zoom": 1.0}
    return job, dict(meta) | found
