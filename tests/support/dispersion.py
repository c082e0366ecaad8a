"""An independent spot finder for the level-quality test: DIALS's dispersion threshold.

Written from DIALS's documented defaults, not from pyis code, so the test does not grade pyis
with its own rule: a (2k+1)^2 local window (k = 3, 7x7), a pixel is strong when its window's
index of dispersion (variance / mean) exceeds ``gain * (1 + 6 * sqrt(2 / (n - 1)))`` and the
pixel exceeds the window mean by ``3 * sqrt(gain * mean)``; at least 2 valid pixels in the
window. The gain is estimated from the frame as ``dials.estimate_gain`` does: the index of
dispersion over a 21x21 window for every pixel, outliers beyond 1.5 IQR of the quartiles
dropped, the median of the rest. Spots are 8-connected groups of strong pixels of 3 to 1000
pixels (DIALS drops larger ones: powder rings, shadows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SIGMA_BACKGROUND = 6.0
SIGMA_STRONG = 3.0
KERNEL = 3  # half-size: 7x7
GAIN_KERNEL = 10  # half-size: 21x21, dials.estimate_gain's kernel_size = 10,10
MIN_LOCAL = 2
MIN_SPOT, MAX_SPOT = 3, 1000


@dataclass(frozen=True)
class Spots:
    gain: float
    strong: np.ndarray  # bool, frame shape: pixels of accepted spots
    peaks: np.ndarray  # (n, 2) row, col of each spot's brightest pixel
    excluded: np.ndarray  # bool: strong pixels of rejected (too large) groups, not background


def _window_sums(values: np.ndarray, valid: np.ndarray, half: int) -> tuple[np.ndarray, ...]:
    """(count, sum, sum of squares) of the valid pixels in each (2 half + 1)^2 window."""
    size = 2 * half + 1
    x = np.where(valid, values, 0.0)

    def total(a: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(a, size, mode="constant") * (size * size)

    return np.rint(total(valid.astype(np.float64))), total(x), total(x * x)


def _dispersion(n: np.ndarray, s: np.ndarray, q: np.ndarray) -> np.ndarray:
    """variance / mean of each window; NaN where it is undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (n * q - s * s) / ((n - 1) * s)
    out[(n < MIN_LOCAL) | (s <= 0)] = np.nan
    return out


def estimate_gain(values: np.ndarray, valid: np.ndarray) -> float:
    d = _dispersion(*_window_sums(values, valid, GAIN_KERNEL))
    d = np.sort(d[valid & np.isfinite(d)])
    if d.size < 4:
        return 1.0
    q1, q3 = d[round(d.size / 4)], d[min(round(d.size * 3 / 4), d.size - 1)]
    iqr = q3 - q1
    if iqr <= 0:
        return 1.0
    kept = d[(d > q1 - 1.5 * iqr) & (d < q3 + 1.5 * iqr)]
    return float(kept[round(kept.size / 2)]) if kept.size else 1.0


def find_spots(data: np.ndarray, valid: np.ndarray) -> Spots:
    """``valid``: pixels with data (not masked, not a gap, not saturated)."""
    values = data.astype(np.float64)
    gain = max(estimate_gain(values, valid), 1e-3)
    n, s, q = _window_sums(values, valid, KERNEL)
    d = _dispersion(n, s, q)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        dispersed = d > gain * (1.0 + SIGMA_BACKGROUND * np.sqrt(2.0 / (n - 1)))
        bright = values - mean > SIGMA_STRONG * np.sqrt(gain * mean)
    strong = valid & dispersed & bright & (values > 0)
    labels, count = ndimage.label(strong, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = (sizes >= MIN_SPOT) & (sizes <= MAX_SPOT)
    keep[0] = False
    accepted = keep[labels]
    index = np.flatnonzero(keep)
    peaks = ndimage.maximum_position(np.where(accepted, values, -np.inf), labels, index)
    excluded = strong & ~accepted & (sizes[labels] > MAX_SPOT)
    return Spots(gain, accepted, np.asarray(peaks, dtype=np.int64).reshape(-1, 2), excluded)
