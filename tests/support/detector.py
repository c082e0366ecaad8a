"""Write frames the way detectors do, for the follow tests and bench/live.py.

Pilatus-style: one file per frame, written then closed, or written to a hidden temporary
name, closed and renamed into place. Eiger-style: a master whose data file grows frame by
frame (the file opened, one frame appended, closed: every close is a frame more on disk).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

DATA = "/entry/data/data"
DETECTOR = "/entry/instrument/detector"


def write_frame(src: Path | bytes, dst: Path, *, rename: bool = False, group: str = "") -> None:
    """Copy a frame into place; ``rename``: through ``.NAME.tmp`` and ``rename(2)``."""
    tmp = dst.with_name(f".{dst.name}.tmp") if rename else dst
    with open(tmp, "wb") as out:
        if group:
            shutil.chown(tmp, "root", group)
        os.fchmod(out.fileno(), 0o644)
        out.write(src if isinstance(src, bytes) else Path(src).read_bytes())
    if rename:
        os.rename(tmp, dst)


class EigerSeries:
    """``PREFIX_master.h5`` linking ``PREFIX_data_000001.h5``, which starts empty."""

    def __init__(self, folder: Path, prefix: str, shape: tuple[int, int], nimages: int) -> None:
        self.master = folder / f"{prefix}_master.h5"
        self.data = folder / f"{prefix}_data_000001.h5"
        self.shape = shape
        with h5py.File(self.master, "w") as f:
            det = f.create_group(DETECTOR)
            det["description"] = np.bytes_(b"Dectris EIGER2 follow test")
            det["beam_center_x"], det["beam_center_y"] = np.float32(20.5), np.float32(15.25)
            det["bit_depth_image"] = np.uint32(32)
            det["saturation_value"] = np.uint32(50000)
            det["detectorSpecific/nimages"] = np.uint32(nimages)
            det["detectorSpecific/x_pixels_in_detector"] = np.uint32(shape[1])
            det["detectorSpecific/y_pixels_in_detector"] = np.uint32(shape[0])
            det["detectorSpecific/pixel_mask"] = np.zeros(shape, np.uint32)
            f["/entry/data/data_000001"] = h5py.ExternalLink(self.data.name, DATA)
        with h5py.File(self.data, "w") as d:
            d.create_dataset(
                DATA, shape=(0, *shape), maxshape=(None, *shape), chunks=(1, *shape),
                dtype=np.uint32, **hdf5plugin.Bitshuffle(),
            )  # fmt: skip
        for path in (self.master, self.data):
            os.chmod(path, 0o644)

    def chown(self, group: str) -> None:
        for path in (self.master, self.data):
            shutil.chown(path, "root", group)

    def append(self, frame: np.ndarray) -> int:
        """One frame more on disk (the file closed after it); its number in the series."""
        with h5py.File(self.data, "a") as d:
            ds = d[DATA]
            n = ds.shape[0]
            ds.resize(n + 1, axis=0)
            ds[n] = frame
        return n + 1
