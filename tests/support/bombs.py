"""Crafted "bomb" files: a few kilobytes that declare frames of hundreds of megabytes.

Made by the tests (and bench/soak.py) in their own directories, never checked in. Each is what
an attacker with write access to an ESAF home could leave there; every reader must refuse it
with one ``unsupported:`` reply before allocating what it declares.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

DATA = "/entry/data/data"


def hdf5_unwritten(path: Path) -> None:
    """The issue's case: chunks declared, none written; every frame reads as fill value."""
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA, (50, 8192, 8192), "u4", chunks=(1, 8192, 8192), fillvalue=7)


def hdf5_contiguous_unallocated(path: Path) -> None:
    """Contiguous storage never allocated: HDF5 answers with the fill value at full size."""
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA, (4, 8192, 8192), "u2", fillvalue=3)


def hdf5_uint64_frame(path: Path) -> None:
    """One frame of 2**28 pixels, 8 bytes each: 2 GiB from a 3 KB file."""
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA, (1, 16384, 16384), "u8", chunks=(1, 4096, 4096))


def hdf5_tiny_chunks(path: Path) -> None:
    """A frame cut into 262,144 chunks: a B-tree walk per chunk stalls the worker."""
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA, (2, 4096, 4096), "u2", chunks=(1, 8, 8))


def cbf_declared(path: Path) -> None:
    """A miniCBF header declaring 8000x8000 pixels over 3 KB of byte-offset data."""
    header = (
        "###CBF: VERSION 1.5\r\ndata_crafted\r\n_array_data.data\r\n;\r\n"
        "--CIF-BINARY-FORMAT-SECTION--\r\n"
        "Content-Type: application/octet-stream;\r\n"
        '     conversions="x-CBF_BYTE_OFFSET"\r\n'
        "Content-Transfer-Encoding: BINARY\r\n"
        "X-Binary-Size: 3000\r\n"
        'X-Binary-Element-Type: "signed 32-bit integer"\r\n'
        "X-Binary-Element-Byte-Order: LITTLE_ENDIAN\r\n"
        "X-Binary-Number-of-Elements: 64000000\r\n"
        "X-Binary-Size-Fastest-Dimension: 8000\r\n"
        "X-Binary-Size-Second-Dimension: 8000\r\n\r\n"
    )
    path.write_bytes(header.encode() + b"\x0c\x1a\x04\xd5" + b"\x00" * 3000)


def tiff_declared(path: Path) -> None:
    """A TIFF whose tags declare 12000x12000 16-bit pixels in one strip of 2 KB."""
    width = height = 12000
    entries = [
        (256, 4, width),  # ImageWidth, LONG
        (257, 4, height),  # ImageLength
        (258, 3, 16),  # BitsPerSample, SHORT
        (259, 3, 1),  # Compression: none
        (262, 3, 1),  # Photometric: black is zero
        (273, 4, 0),  # StripOffsets: patched below
        (277, 3, 1),  # SamplesPerPixel
        (278, 4, height),  # RowsPerStrip
        (279, 4, 2048),  # StripByteCounts
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    data_at = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_at if tag == 273 else value
        packed = struct.pack("<I", value) if kind == 4 else struct.pack("<HH", value, 0)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x01" * 2048)


def edf_declared(path: Path) -> None:
    """An ESRF EDF header declaring 9000x9000 unsigned shorts over 2 KB of data."""
    text = (
        "{\nHeaderID = EH:000001:000000:000000 ;\nImage = 1 ;\nByteOrder = LowByteFirst ;\n"
        "DataType = UnsignedShort ;\nDim_1 = 9000 ;\nDim_2 = 9000 ;\nSize = 162000000 ;\n"
    )
    header = text.ljust(1022) + "}\n"
    path.write_bytes(header.encode() + b"\x02" * 2048)


def dicom_declared(path: Path) -> None:
    """DICOM Rows x Columns 16000 x 16000 (256 Mpixel, under the old pixel cap) over 2 KB."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Rows = ds.Columns = 16000
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.zeros(1024, np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


BOMBS: dict[str, Callable[[Path], None]] = {
    "unwritten.h5": hdf5_unwritten,
    "unallocated.h5": hdf5_contiguous_unallocated,
    "uint64.h5": hdf5_uint64_frame,
    "tiny_chunks.h5": hdf5_tiny_chunks,
    "declared.cbf": cbf_declared,
    "declared.tif": tiff_declared,
    "declared.edf": edf_declared,
    "declared.dcm": dicom_declared,
}


def write_all(folder: Path) -> list[Path]:
    """Every bomb in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in BOMBS.items():
        make(folder / name)
    return [folder / name for name in BOMBS]
