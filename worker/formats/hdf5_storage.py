"""What an HDF5 dataset really stores for one frame, so :mod:`budget` can refuse a bomb.

HDF5 answers a read of a chunk that was never written with the fill value, at full size and
without complaint, and decompresses whole chunks to return any part of one. So the bytes a
frame costs are the chunks covering it, and the bytes the file holds for it are those chunks'
stored sizes (``get_chunk_info_by_coord``), asked one chunk at a time before anything is read.
"""

from __future__ import annotations

import math

import h5py
import numpy as np

from pyis_common.errors import Unsupported
from worker.formats import budget

CHUNKS_PER_FRAME_MAX = 4096  # each costs a B-tree lookup and a filter call: 1x1 chunks stall
VALUE_CHUNK_BYTES_MAX = 16 << 20  # a header "scalar" must not decompress a gigabyte chunk


def check_frame(ds: h5py.Dataset, index: int, name: str) -> None:
    """Refuse frame ``index`` (of a 3-D stack; a 2-D dataset is one frame) before reading it."""
    shape = tuple(int(n) for n in ds.shape[-2:])
    itemsize = ds.dtype.itemsize
    if ds.chunks is None:  # contiguous or compact: stored as is, or not at all
        share = math.prod(shape) / max(math.prod(ds.shape), 1)
        budget.check(name, shape, itemsize, int(ds.id.get_storage_size() * share))
        return
    chunks = tuple(int(n) for n in ds.chunks)
    rows, cols = range(0, shape[0], chunks[-2]), range(0, shape[1], chunks[-1])
    count = len(rows) * len(cols)
    if count > CHUNKS_PER_FRAME_MAX:
        raise Unsupported(
            f"{name} cuts each frame into {count} chunks; refused as too slow to read"
        )
    budget.check(name, shape, itemsize, None, count * math.prod(chunks) * itemsize)
    lead = (index // chunks[0] * chunks[0],) if ds.ndim == 3 else ()
    stored = 0
    for row in rows:
        for col in cols:
            info = ds.id.get_chunk_info_by_coord((*lead, row, col))
            stored += int(info.size) if info.byte_offset is not None else 0
    budget.check(name, shape, itemsize, stored, count * math.prod(chunks) * itemsize)


def small_read(node: h5py.Dataset) -> bool:
    """True when reading one element decodes little (a header value, not a hidden chunk bomb)."""
    chunks = node.chunks
    return (
        chunks is None or math.prod(chunks) * np.dtype(node.dtype).itemsize <= VALUE_CHUNK_BYTES_MAX
    )
