"""The geometry keys of ``meta``: what a viewer needs to draw resolution rings and to read the
resolution under the cursor, in one style with the unit in the name (``<quantity>_<unit>``).

The C server's keys stay exactly as it sent them (``detector_distance`` and ``x_pixel_size`` in
metres, ``wavelength`` in Angstrom, ``beam_center_x`` in pixels; ORIGINAL.md section 5); these
are added beside them, from them, in one place for every format:

``beam_x_px beam_y_px pixel_x_mm pixel_y_mm distance_mm wavelength_A two_theta_deg``
``resolution_edge_A resolution_corner_A``

Pixel coordinates are continuous: pixel ``i`` spans ``[i, i + 1)``, as detector headers give the
beam centre. ``two_theta_deg`` (only when the header has it) turns the detector about its fast
(x) axis through the sample, the way dxtbx builds a swung Pilatus: the beam centre stays the
foot of the perpendicular from the sample, and a positive angle takes rows of larger y (lower in
the picture) to higher scattering angles. Resolutions need all of beam centre, pixel size,
distance and wavelength; a header without one of them gets no resolution, never a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DIGITS = 4  # 0.1 um, 1e-4 Angstrom: more than any header knows


@dataclass(frozen=True)
class Geometry:
    beam_x_px: float
    beam_y_px: float
    pixel_x_mm: float
    pixel_y_mm: float
    distance_mm: float
    wavelength_A: float  # noqa: N815  the unit is the name's point
    two_theta_deg: float = 0.0

    def d_spacing(self, x: Any, y: Any) -> np.ndarray:
        """d (Angstrom) at detector pixel coordinates ``x, y`` (arrays); inf on the beam."""
        dx = (np.asarray(x, np.float64) - self.beam_x_px) * self.pixel_x_mm
        dy = (np.asarray(y, np.float64) - self.beam_y_px) * self.pixel_y_mm
        t = math.radians(self.two_theta_deg)
        along_beam = self.distance_mm * math.cos(t) - dy * math.sin(t)
        length = np.sqrt(dx * dx + dy * dy + self.distance_mm**2)
        sin_theta = np.sqrt(np.clip((1.0 - along_beam / length) / 2.0, 0.0, 1.0))
        with np.errstate(divide="ignore"):
            return self.wavelength_A / (2.0 * sin_theta)

    def direct_beam_px(self) -> tuple[float, float]:
        """Where the direct beam meets the detector plane (pixels; far away when swung by
        90 degrees or more, so never on the detector)."""
        t = math.radians(self.two_theta_deg)
        if math.cos(t) <= 1e-9:
            return math.inf, math.inf
        return self.beam_x_px, self.beam_y_px - self.distance_mm * math.tan(t) / self.pixel_y_mm

    def edge_and_corner(self, width: int, height: int) -> tuple[float, float]:
        """(d at the detector edge nearest the beam: rings are whole down to it, d at the
        farthest corner: the best resolution recorded anywhere on the frame)."""
        bx, by = min(max(self.beam_x_px, 0.0), width), min(max(self.beam_y_px, 0.0), height)
        feet = self.d_spacing([bx, bx, 0.0, width], [0.0, height, by, by])
        corners = self.d_spacing([0.0, width, 0.0, width], [0.0, 0.0, height, height])
        return float(feet.max()), float(corners.min())


def _number(meta: dict[str, Any], key: str) -> float | None:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def from_meta(meta: dict[str, Any]) -> Geometry | None:
    """The geometry when the header gave all of it (sizes > 0), else None."""
    keys = ("beam_center_x", "beam_center_y", "x_pixel_size", "y_pixel_size")
    values = [_number(meta, k) for k in (*keys, "detector_distance", "wavelength")]
    if any(v is None or v <= 0 for v in values[2:]) or None in values[:2]:
        return None
    bx, by, px, py, distance, wavelength = (float(v or 0.0) for v in values)
    two_theta = _number(meta, "two_theta_deg") or 0.0
    return Geometry(bx, by, px * 1000.0, py * 1000.0, distance * 1000.0, wavelength, two_theta)


def add(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with the geometry keys the header supports added (in place, and returned)."""
    for key, source, scale in (
        ("beam_x_px", "beam_center_x", 1.0),
        ("beam_y_px", "beam_center_y", 1.0),
        ("pixel_x_mm", "x_pixel_size", 1000.0),
        ("pixel_y_mm", "y_pixel_size", 1000.0),
        ("distance_mm", "detector_distance", 1000.0),
        ("wavelength_A", "wavelength", 1.0),
    ):
        value = _number(meta, source)
        if value is not None:
            meta[key] = round(value * scale, DIGITS)
    geometry = from_meta(meta)
    width, height = meta.get("x_pixels_in_detector"), meta.get("y_pixels_in_detector")
    if geometry is not None and isinstance(width, int) and isinstance(height, int):
        edge, corner = geometry.edge_and_corner(width, height)
        if math.isfinite(edge):  # a detector that is one pixel on the beam has no edge ring
            meta["resolution_edge_A"] = round(edge, DIGITS)
        if math.isfinite(corner):
            meta["resolution_corner_A"] = round(corner, DIGITS)
    return meta
