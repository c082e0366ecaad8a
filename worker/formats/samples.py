"""Tiny files in the formats no library here writes for us: an Eiger master with its
bitshuffle/LZ4 data files, and DICOM (native, RLE, JPEG 2000).

The zygote writes and reads them once before forking (worker/warmup.py), so every decoder
those formats load lazily is loaded while the Python tree is still readable; the tests use them
where the shared test data has no such file (no Eiger master with its data files is public at
a size we can ship). They are written with the libraries, never by hand.
"""

from __future__ import annotations

import io
import os
from typing import Any

import h5py
import hdf5plugin
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

DETECTOR = "/entry/instrument/detector"
SYNTAXES = {"native": ExplicitVRLittleEndian, "rle": RLELossless, "j2k": JPEG2000Lossless}


def write_eiger(
    folder: str,
    stem: str,
    frames: np.ndarray,
    per_file: int,
    mask: np.ndarray | None = None,
    header: dict[str, Any] | None = None,
) -> str:
    """``<stem>_master.h5`` with ``data_NNNNNN`` external links to ``<stem>_data_NNNNNN.h5``,
    ``per_file`` frames each (bitshuffle/LZ4, one chunk per frame, image_nr_low/high set), as
    the DECTRIS file writer lays them out. ``header`` values go under the detector group
    (``detectorSpecific/...`` keys included). Returns the master's path.
    """
    master = os.path.join(folder, f"{stem}_master.h5")
    with h5py.File(master, "w") as f:
        det = f.create_group(DETECTOR)
        specific = det.create_group("detectorSpecific")
        specific["nimages"] = np.uint32(len(frames))
        specific["x_pixels_in_detector"] = np.uint32(frames.shape[2])
        specific["y_pixels_in_detector"] = np.uint32(frames.shape[1])
        det["bit_depth_image"] = np.uint32(8 * frames.dtype.itemsize)
        for key, value in (header or {}).items():
            det[key] = value
        if mask is not None:
            specific["pixel_mask"] = mask.astype(np.uint32)
        data = f.create_group("/entry/data")
        for k, first in enumerate(range(0, len(frames), per_file), start=1):
            name = f"{stem}_data_{k:06d}.h5"
            _write_data(os.path.join(folder, name), frames[first : first + per_file], first + 1)
            data[f"data_{k:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
    return master


def _write_data(path: str, frames: np.ndarray, low: int) -> None:
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "/entry/data/data",
            data=frames,
            chunks=(1, *frames.shape[1:]),
            **hdf5plugin.Bitshuffle(cname="lz4"),
        )
        ds.attrs["image_nr_low"] = np.int32(low)
        ds.attrs["image_nr_high"] = np.int32(low + len(frames) - 1)


def _jpeg2000(frame: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="JPEG2000", no_jp2=True, irreversible=False)
    return out.getvalue()


def write_dicom(
    path: str, frames: np.ndarray, syntax: str = "native", window: tuple[float, float] | None = None
) -> None:
    """A secondary-capture DICOM of uint16 ``frames`` (2-D, or 3-D for multi-frame) in one of
    :data:`SYNTAXES`; ``window`` is (centre, width).
    """
    frames = np.ascontiguousarray(frames, dtype=np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = SYNTAXES[syntax]
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        SecondaryCaptureImageStorage,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality = "OT"
    ds.Rows, ds.Columns = frames.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if frames.ndim == 3:
        ds.NumberOfFrames = frames.shape[0]
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if syntax == "j2k":
        ds.PixelData = encapsulate([_jpeg2000(f) for f in frames.reshape(-1, *frames.shape[-2:])])
    else:
        ds.PixelData = frames.tobytes()
        if syntax == "rle":
            ds.compress(RLELossless, frames)
    ds.save_as(path, enforce_file_format=True)
