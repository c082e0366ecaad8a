"""An Eiger series written with h5py and hdf5plugin, and test-data paths, for the format tests."""

from __future__ import annotations

from pathlib import Path

import fabio
import h5py
import hdf5plugin
import numpy as np
import pydicom
import pydicom.pixels

from tests.conftest import TESTDATA

DATA = "/entry/data/data"
DETECTOR = "/entry/instrument/detector"


def path_of(name: str) -> str:
    return str(TESTDATA / name)


def library_frame(path: str, index: int = 0) -> np.ndarray:
    """Frame ``index`` (0-based) decoded by the library a user would use, not by us."""
    if path.endswith(".h5"):
        with h5py.File(path, "r") as f:
            return f[DATA][index]
    if path.endswith(".dcm"):
        return pydicom.pixels.pixel_array(path, index=index)
    return fabio.open(path).data


def write_series(
    folder: Path, frames: np.ndarray, per_file: int, mask: np.ndarray, numbered: bool = True
) -> Path:
    """An Eiger master + data files as the DECTRIS file writer lays them out, written with
    h5py and hdf5plugin's bitshuffle/LZ4 directly (independent of worker.formats.samples)."""
    master = folder / "series_master.h5"
    with h5py.File(master, "w") as f:
        det = f.create_group(DETECTOR)
        det["description"] = np.bytes_(b"Dectris EIGER2 test")
        det["beam_center_x"], det["beam_center_y"] = np.float32(20.5), np.float32(15.25)
        det["bit_depth_image"] = np.uint32(32)
        det["saturation_value"] = np.uint32(50000)
        det["detectorSpecific/nimages"] = np.uint32(len(frames))
        det["detectorSpecific/x_pixels_in_detector"] = np.uint32(frames.shape[2])
        det["detectorSpecific/y_pixels_in_detector"] = np.uint32(frames.shape[1])
        det["detectorSpecific/pixel_mask"] = mask.astype(np.uint32)
        f["/entry/sample/goniometer/omega"] = np.arange(len(frames), dtype=np.float32) * 0.25 + 10
        f["/entry/sample/goniometer/omega_range_average"] = np.float32(0.25)
        for k, first in enumerate(range(0, len(frames), per_file), start=1):
            name = f"series_data_{k:06d}.h5"
            with h5py.File(folder / name, "w") as d:
                ds = d.create_dataset(
                    DATA, data=frames[first : first + per_file], chunks=(1, *frames.shape[1:]),
                    **hdf5plugin.Bitshuffle(),
                )  # fmt: skip
                if numbered:
                    ds.attrs["image_nr_low"] = np.uint64(first + 1)
                    ds.attrs["image_nr_high"] = np.uint64(first + per_file)
            f[f"/entry/data/data_{k:06d}"] = h5py.ExternalLink(name, DATA)
    return master


def six_frames(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Six 30x40 uint32 frames of different noise, three per data file, a masked row and a
    masked pixel at the saturation value (it must be neither red nor counted)."""
    rng = np.random.default_rng(7)
    frames = rng.poisson(20, (6, 30, 40)).astype(np.uint32)
    mask = np.zeros((30, 40), np.uint32)
    mask[10, :] = 1
    mask[3, 4] = 8
    frames[:, 3, 4] = 60000
    frames[:, 10, :] = 0xFFFFFFFF
    return write_series(tmp_path, frames, 3, mask), frames, mask != 0
