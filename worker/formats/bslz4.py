"""Eiger's bitshuffle/LZ4 frames, decoded without the HDF5 filter pipeline.

An Eiger data file stores one frame per chunk, compressed with HDF5 filter 32008 (bitshuffle
+ LZ4). Reading the raw chunk (``read_direct_chunk``) and decoding it with the bitshuffle
library is 3x faster than ``ds[i]`` through the filter plugin (18 ms against 55 ms for a 16M
frame here): HDF5's pipeline copies the chunk several times and hdf5plugin's build has no
AVX2. Anything that is not exactly that layout returns None and takes the ordinary path.
"""

from __future__ import annotations

import struct

import bitshuffle
import h5py
import numpy as np

FILTER_BSHUF = "32008"
LZ4 = 2  # bitshuffle's compression code in the filter's cd_values
HEADER = struct.Struct(">QI")  # total uncompressed bytes, block size in bytes


def _layout_ok(ds: h5py.Dataset) -> bool:
    filters = ds._filters  # h5py's own parse of the dataset's filter pipeline
    if list(filters) != [FILTER_BSHUF] or ds.chunks != (1, *ds.shape[1:]):
        return False
    options = filters[FILTER_BSHUF]
    return len(options) >= 5 and options[4] == LZ4 and ds.dtype.kind in "iu"


def read_frame(ds: h5py.Dataset, index: int) -> np.ndarray | None:
    """Frame ``index`` of a (frames, H, W) dataset, or None to use ``ds[index]``."""
    if not _layout_ok(ds):
        return None
    skipped, chunk = ds.id.read_direct_chunk((index, 0, 0))
    if skipped:  # some filter was not applied to this chunk: let HDF5 sort it out
        return None
    if len(chunk) < HEADER.size:
        raise ValueError("truncated bitshuffle/LZ4 chunk")
    total, block = HEADER.unpack_from(chunk)
    itemsize = ds.dtype.itemsize
    pixels = ds.shape[1] * ds.shape[2]
    if total != pixels * itemsize or block % itemsize:
        raise ValueError("bitshuffle/LZ4 chunk header does not match the dataset")
    payload = np.frombuffer(chunk, np.uint8, offset=HEADER.size)
    data = bitshuffle.decompress_lz4(payload, (pixels,), ds.dtype, block // itemsize)
    return data.reshape(ds.shape[1:])
