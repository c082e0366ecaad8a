"""Eiger NeXus headers: a link-safe walk of an HDF5 file, and the detector metadata.

HDF5 links can point anywhere: an external link (or a dataset with external raw storage) in a
file a user controls could make the worker open a file outside the ESAF home, or a FIFO that
hangs it. So nothing here indexes a file with ``f[path]``: :func:`lookup` walks one component
at a time, follows soft links inside the file (with a hop limit) and never an external link.
Only the Eiger reader follows the data links, after checking where they point.
"""

from __future__ import annotations

import posixpath
from typing import Any, TypeAlias

import h5py
import numpy as np

from worker.formats import hdf5_storage
from worker.formats.base import finite, plain, positive
from worker.formats.pilatus import HC_EV_A

DETECTOR = "/entry/instrument/detector"
SPECIFIC = DETECTOR + "/detectorSpecific"
GONIOMETER = "/entry/sample/goniometer"
MAX_HOPS = 8  # soft links followed in one lookup; a cycle must not loop forever

Node: TypeAlias = h5py.Group | h5py.Dataset


def lookup(f: h5py.File, path: str, hops: int = MAX_HOPS) -> Node | None:
    """The object at ``path`` reached through hard and soft links only, else None."""
    node: Node = f["/"]
    for part in (p for p in path.split("/") if p):
        if not isinstance(node, h5py.Group):
            return None
        link = node.get(part, getlink=True)
        if isinstance(link, h5py.SoftLink):
            if hops <= 0:
                return None
            target = posixpath.join(node.name, link.path)
            found = lookup(f, posixpath.normpath(target), hops - 1)
            if found is None:
                return None
            node = found
        elif isinstance(link, h5py.HardLink):
            node = node[part]
        else:  # missing, or an external link: never followed from here
            return None
    return node


def value(f: h5py.File, path: str) -> Any:
    """A scalar, or the first element of an array (firmware 1.8 writes omega per image), as a
    Python value; None when absent or not a number or text. Only that one element is read.
    """
    try:
        node = lookup(f, path)
        if not isinstance(node, h5py.Dataset) or node.shape is None or not node.size:
            return None
        if not hdf5_storage.small_read(node):
            return None
        raw = node[()] if node.ndim == 0 else node[(0,) * node.ndim]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    if isinstance(raw, bytes | np.bytes_):
        return raw.decode("utf-8", "replace").strip("\x00 ")
    if isinstance(raw, str):
        return raw.strip("\x00 ")
    if isinstance(raw, np.floating) and raw.dtype.itemsize < 8:
        raw = float(str(raw))  # float32 0.9801122, not 0.9801121950149536: its shortest form
    raw = plain(raw)
    return raw if isinstance(raw, int | float) and np.isfinite(raw) else None


def number(f: h5py.File, path: str) -> float | None:
    found = value(f, path)
    return float(found) if isinstance(found, int | float) else None


def count(f: h5py.File) -> int | None:
    """nimages x ntrigger: the images one data collection wrote (ntrigger defaults to 1)."""
    nimages = number(f, SPECIFIC + "/nimages")
    if nimages is None or nimages < 1:
        return None
    ntrigger = number(f, SPECIFIC + "/ntrigger")
    return int(nimages) * int(ntrigger if ntrigger and ntrigger >= 1 else 1)


def to_meta(f: h5py.File) -> dict[str, Any]:
    """DECTRIS header values under the C server's names (SI units, pixels, degrees)."""
    meta: dict[str, Any] = {}
    for key, path in (
        ("detector", DETECTOR + "/description"),
        ("detector_number", DETECTOR + "/detector_number"),
        ("software_version", SPECIFIC + "/software_version"),
    ):
        text = value(f, path)
        if isinstance(text, str) and text:
            meta[key] = text
    positive(meta, "wavelength", number(f, "/entry/instrument/beam/incident_wavelength"))
    positive(meta, "photon_energy", number(f, SPECIFIC + "/photon_energy"))
    if "photon_energy" not in meta and "wavelength" in meta:
        meta["photon_energy"] = HC_EV_A / meta["wavelength"]
    finite(meta, "beam_center_x", number(f, DETECTOR + "/beam_center_x"))
    finite(meta, "beam_center_y", number(f, DETECTOR + "/beam_center_y"))
    positive(meta, "detector_distance", number(f, DETECTOR + "/detector_distance"))
    positive(meta, "x_pixel_size", number(f, DETECTOR + "/x_pixel_size"))
    positive(meta, "y_pixel_size", number(f, DETECTOR + "/y_pixel_size"))
    positive(meta, "count_time", number(f, DETECTOR + "/count_time"))
    if "count_time" in meta:
        meta["exposureTime"] = meta["count_time"]  # the name the other readers use
    # firmware 1.6 has no saturation_value: its count cutoff is the same limit (XDS reads it)
    saturation = number(f, DETECTOR + "/saturation_value")
    if saturation is None or saturation <= 0:
        saturation = number(f, SPECIFIC + "/countrate_correction_count_cutoff")
    if saturation is not None and saturation > 0:
        meta["saturation"] = int(saturation)
    for name in ("two_theta_start", "two_theta"):  # NXmx: the detector arm, per image or one
        finite(meta, "two_theta_deg", number(f, f"{DETECTOR}/goniometer/{name}"))
        if "two_theta_deg" in meta:
            break
    depth = number(f, DETECTOR + "/bit_depth_image")
    if depth in (8, 16, 32):
        meta["image_depth"] = int(depth) // 8
    for key in ("nimages", "ntrigger"):
        found = number(f, f"{SPECIFIC}/{key}")
        if found is not None and found >= 1:
            meta[key] = int(found)
    _omega(f, meta)
    return meta


def _omega(f: h5py.File, meta: dict[str, Any]) -> None:
    """Firmware 1.6 writes omega_start/omega_increment; 1.8 writes the omega array and
    omega_range_average. Either way: the start of image 1 and the step per image.
    """
    start = number(f, GONIOMETER + "/omega_start")
    if start is None:
        start = number(f, GONIOMETER + "/omega")
    step = number(f, GONIOMETER + "/omega_increment")
    if step is None:
        step = number(f, GONIOMETER + "/omega_range_average")
    finite(meta, "omega_start", start)
    finite(meta, "omega_increment", step)


def frame_angles(meta: dict[str, Any], frame: int) -> None:
    """startPhi/rotationRange of one image, the names every other reader reports."""
    if "omega_start" in meta and "omega_increment" in meta:
        meta["startPhi"] = meta["omega_start"] + (frame - 1) * meta["omega_increment"]
        meta["rotationRange"] = meta["omega_increment"]
