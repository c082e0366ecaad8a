"""fabio header dicts -> the C server's meta names, one small function per format.

Each function reads only keys that format really writes, in that format's units, and converts
to the wire units (Angstrom, metres, pixels, degrees, seconds). A key the header lacks or leaves
at 0 is omitted: a guessed distance or beam centre misleads a user more than a missing one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.formats import pilatus
from worker.formats.base import finite, positive
from worker.formats.pilatus import first, numbers

Header = dict[str, Any]


def _text(header: Header) -> dict[str, str]:
    return {str(k): str(v) for k, v in header.items()}


def smv(header: Header, shape: tuple[int, int]) -> dict[str, Any]:
    """ADSC-style SMV: mm and Angstrom. BEAM_CENTER_X/Y are mm by the ADSC convention; sites
    disagree (the Stockholm Timepix writes pixels), so a centre that does not land on the
    detector as mm is read as pixels, and one that lands nowhere is left out.
    """
    h = _text(header)
    meta: dict[str, Any] = {}
    size = first(h, "PIXEL_SIZE")
    positive(meta, "wavelength", first(h, "WAVELENGTH"))
    positive(meta, "detector_distance", first(h, "DISTANCE"), 1e-3)
    positive(meta, "x_pixel_size", size, 1e-3)
    positive(meta, "y_pixel_size", size, 1e-3)
    bx, by = first(h, "BEAM_CENTER_X"), first(h, "BEAM_CENTER_Y")
    if size and bx is not None and by is not None:
        for px, py in ((bx / size, by / size), (bx, by)):  # mm (ADSC), else pixels (Timepix)
            if 0 <= px <= shape[1] and 0 <= py <= shape[0]:
                meta["beam_center_x"], meta["beam_center_y"] = px, py
                break
    finite(meta, "two_theta_deg", first(h, "TWOTHETA"))
    finite(meta, "startPhi", first(h, "OSC_START"))
    finite(meta, "rotationRange", first(h, "OSC_RANGE"))
    positive(meta, "exposureTime", first(h, "TIME"))
    if h.get("BEAMLINE"):
        meta["beamline"] = h["BEAMLINE"].strip()
    saturation = first(h, "SATURATED_VALUE")
    if saturation and saturation > 0:
        meta["saturation"] = int(saturation)
    return meta


def mar345(header: Header, shape: tuple[int, int]) -> dict[str, Any]:
    """mar345 image plate: mm, pixel centre, phi start/end."""
    h, meta = _text(header), {"detector": "mar345"}
    positive(meta, "wavelength", first(h, "WAVELENGTH"))
    positive(meta, "detector_distance", first(h, "DISTANCE"), 1e-3)
    positive(meta, "x_pixel_size", first(h, "PIXEL_LENGTH"), 1e-6)  # um
    positive(meta, "y_pixel_size", first(h, "PIXEL_HEIGHT"), 1e-6)
    finite(meta, "beam_center_x", first(h, "CENTER_X"))
    finite(meta, "beam_center_y", first(h, "CENTER_Y"))
    finite(meta, "two_theta_deg", first(h, "TWOTHETA"))
    start, end = first(h, "PHI_START"), first(h, "PHI_END")
    finite(meta, "startPhi", start)
    if start is not None and end is not None:
        finite(meta, "rotationRange", end - start)
    positive(meta, "exposureTime", first(h, "TIME"))
    return meta


def bruker(header: Header, shape: tuple[int, int]) -> dict[str, Any]:
    """Bruker SFRM: DISTANC in cm, CENTER in pixels, INCREME the scan step."""
    h = _text(header)
    meta: dict[str, Any] = {}
    if h.get("DETTYPE", "").split():
        meta["detector"] = h["DETTYPE"].split()[0]
    positive(meta, "wavelength", first(h, "WAVELEN"))
    positive(meta, "detector_distance", first(h, "DISTANC"), 1e-2)
    centre = numbers(h.get("CENTER"))
    if len(centre) >= 2:
        finite(meta, "beam_center_x", centre[0])
        finite(meta, "beam_center_y", centre[1])
    angles = numbers(h.get("ANGLES"))  # 2-theta, omega, phi, chi
    if angles:
        finite(meta, "two_theta_deg", angles[0])
    finite(meta, "startPhi", first(h, "START"))
    finite(meta, "rotationRange", first(h, "INCREME"))
    positive(meta, "exposureTime", first(h, "CUMULAT"))
    return meta


def kcd(header: Header, shape: tuple[int, int]) -> dict[str, Any]:
    """Nonius KappaCCD: Dx in mm, pixel size in um, Alpha1 the anode's K-alpha1."""
    h, meta = _text(header), {"detector": "Nonius KappaCCD"}
    positive(meta, "wavelength", first(h, "Alpha1"))
    positive(meta, "detector_distance", first(h, "Dx start"), 1e-3)
    positive(meta, "x_pixel_size", first(h, "pixel X-size (um)"), 1e-6)
    positive(meta, "y_pixel_size", first(h, "pixel Y-size (um)"), 1e-6)
    finite(meta, "startPhi", first(h, "Phi start"))
    finite(meta, "rotationRange", first(h, "Phi scan range"))
    positive(meta, "exposureTime", first(h, "Exposure time"))
    return meta


def oxd(header: Header, shape: tuple[int, int]) -> dict[str, Any]:
    """Oxford Diffraction: the scanned axis is the one whose start and end differ."""
    h = _text(header)
    meta: dict[str, Any] = {}
    if h.get("Detector type"):
        meta["detector"] = h["Detector type"].split("(")[0].strip()
    positive(meta, "wavelength", first(h, "Wavelength alpha"))
    positive(meta, "detector_distance", first(h, "Distance in mm"), 1e-3)
    positive(meta, "x_pixel_size", first(h, "Real pixel size x (mm)"), 1e-3)
    positive(meta, "y_pixel_size", first(h, "Real pixel size y (mm)"), 1e-3)
    finite(meta, "beam_center_x", first(h, "Beam center x"))
    finite(meta, "beam_center_y", first(h, "Beam center y"))
    positive(meta, "exposureTime", first(h, "Exposure time in sec"))
    for axis in ("Omega", "Phi", "Kappa", "Theta"):
        start, end = first(h, f"{axis} start in deg"), first(h, f"{axis} end in deg")
        if start is not None and end is not None and end != start:
            finite(meta, "startPhi", start)
            finite(meta, "rotationRange", end - start)
            break
    return meta


def edf(header: Header, shape: tuple[int, int]) -> dict[str, Any]:
    """ESRF EDF: no geometry in plain detector headers; files from ESRF's SAXS tools and pyFAI
    carry the SAXS keywords (metres, pixels): Center_1/2, PSize_1/2, SampleDistance,
    WaveLength."""
    h = _text(header)
    meta: dict[str, Any] = {}
    positive(meta, "exposureTime", first(h, "count_time"))
    finite(meta, "beam_center_x", first(h, "Center_1"))
    finite(meta, "beam_center_y", first(h, "Center_2"))
    positive(meta, "x_pixel_size", first(h, "PSize_1"))
    positive(meta, "y_pixel_size", first(h, "PSize_2"))
    positive(meta, "detector_distance", first(h, "SampleDistance"))
    positive(meta, "wavelength", first(h, "WaveLength"), 1e10)  # m -> Angstrom
    return meta


def pilatus_tiff(header: Header, shape: tuple[int, int]) -> dict[str, Any]:
    return pilatus.to_meta(_text(header))


# fabio class name -> (our format name, header mapper)
FORMATS: dict[str, tuple[str, Callable[[Header, tuple[int, int]], dict[str, Any]]]] = {
    "DtrekImage": ("smv", smv),
    "AdscImage": ("smv", smv),
    "Mar345Image": ("mar345", mar345),
    "BrukerImage": ("bruker", bruker),
    "Bruker100Image": ("bruker", bruker),
    "KcdImage": ("kcd", kcd),
    "OxdImage": ("oxd", oxd),
    "EdfImage": ("edf", edf),
    "PilatusImage": ("pilatus-tiff", pilatus_tiff),
}
