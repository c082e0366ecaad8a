"""The Pilatus text header (``# Key value`` lines), shared by miniCBF and Pilatus TIFF.

Two dialects exist in real files: ``PILATUS_1.2`` writes ``Threshold_setting: 6400 eV`` and the
older ``SLS_1.0`` writes ``Threshold_setting 6000 eV``; both write ``Tau = 0 s``. So the key ends
at the first blank, ``:`` or ``=``, and values are read as the numbers they contain.
"""

from __future__ import annotations

import re
from typing import Any

from worker.formats.base import finite, positive

HC_EV_A = 12398.4193  # h*c in eV*Angstrom: photon energy from wavelength, as the C server did

_LINE = re.compile(r"^#\s*([A-Za-z_][\w-]*)\s*[:=]?\s*(.*?)\s*$")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_text(text: str) -> dict[str, str]:
    """``# Key value`` lines -> {Key: value}; the date line and free text are skipped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        found = _LINE.match(line.strip())
        if found:
            fields.setdefault(found.group(1), found.group(2))
    return fields


def numbers(value: str | None) -> list[float]:
    """All numbers in a header value: ``(1261.61, 1306.96) pixels`` -> [1261.61, 1306.96]."""
    return [float(token) for token in _NUMBER.findall(value or "")]


def first(fields: dict[str, str], key: str) -> float | None:
    found = numbers(fields.get(key))
    return found[0] if found else None


def to_meta(fields: dict[str, str]) -> dict[str, Any]:
    """Pilatus header fields -> the C server's meta names (SI units as in the header)."""
    meta: dict[str, Any] = {}
    detector = fields.get("Detector", "").strip()
    if detector:
        meta["detector"] = detector
    positive(meta, "wavelength", first(fields, "Wavelength"))
    if "wavelength" in meta:
        meta["photon_energy"] = HC_EV_A / meta["wavelength"]
    positive(meta, "detector_distance", first(fields, "Detector_distance"))
    beam = numbers(fields.get("Beam_xy"))
    if len(beam) >= 2:
        finite(meta, "beam_center_x", beam[0])
        finite(meta, "beam_center_y", beam[1])
    size = numbers(fields.get("Pixel_size"))
    if len(size) >= 2:
        positive(meta, "x_pixel_size", size[0])
        positive(meta, "y_pixel_size", size[1])
    finite(meta, "startPhi", first(fields, "Start_angle"))
    finite(meta, "rotationRange", first(fields, "Angle_increment"))
    positive(meta, "exposureTime", first(fields, "Exposure_time"))
    finite(meta, "two_theta_deg", first(fields, "Detector_2theta"))
    cutoff = first(fields, "Count_cutoff")
    if cutoff is not None and cutoff > 0:
        meta["saturation"] = int(cutoff)
    return meta
