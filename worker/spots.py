"""The ``spots`` job: a quick count of bright pixels per resolution ring, for the beamline's
"is there diffraction?" view (the C server's ``isSpots``, ORIGINAL.md section 8).

The whole image is max-pooled to ``xsize`` (the stage-1 reduction, so a one-pixel spot
survives). Around the beam centre, r**2 from the nearest to the farthest reduced pixel is cut
into 16 bins of equal r**2 width (equal areas while the rings are whole), and a spot is a valid
pixel whose value exceeds its bin's mean by 1.5 times the bin's rms (the C server's
sensitivity, and its rms rather than standard deviation, so counts compare with its own).

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
from worker.reduce import Reduced

BINS = 16
SENSITIVITY = 1.5  # IS_SPOT_SENSITIVITY: value - mean > 1.5 * rms
STRIP_PIXELS = 1 << 20  # rows per pass so a 10000 px wide reduction never makes 800 MB of r**2


def full_image(req: Request) -> Request:
    """The request spots reduce with: the whole image, as the C server forced it."""
    return dataclasses.replace(req, zoom=1.0, segcol=0.0, segrow=0.0, ysize=None)


def beam(meta: dict[str, Any], shape: tuple[int, int]) -> tuple[float, float, bool]:
    """Beam centre in reduced pixels (x, y), and whether it was guessed (image centre)."""
    h, w = shape
    full_w = float(meta.get("x_pixels_in_detector") or w)
    full_h = float(meta.get("y_pixels_in_detector") or h)
    x, y = meta.get("beam_center_x"), meta.get("beam_center_y")
    guessed = not isinstance(x, int | float) or not isinstance(y, int | float)
    if guessed:
        x, y = full_w / 2, full_h / 2
    return float(x) * w / full_w, float(y) * h / full_h, guessed


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


def reply(reduced: Reduced, meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(job decided, meta) of a spots reply; no picture goes with it."""
    h, w = reduced.data.shape
    cx, cy, guessed = beam(meta, (h, w))
    spots = count(reduced, cx, cy)
    found = {
        "spots": spots,
        "spots_total": sum(spots),
        "spots_beam_x": cx,
        "spots_beam_y": cy,
        "spots_beam_guessed": guessed,
    }
    job = {"xsize": w, "ysize": h, "segcol": 0.0, "segrow": 0.0, "zoom": 1.0}
    return job, dict(meta) | found
