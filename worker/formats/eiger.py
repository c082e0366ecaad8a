"""Eiger HDF5: a NeXus master whose ``/entry/data/data_NNNNNN`` link to data files, or one data
file opened on its own (``/entry/data/data``, frames x rows x columns).

Frames are 1-based across the series: each data dataset's ``image_nr_low``/``image_nr_high``
say which images it holds, else the data files count on from each other. A data file opened on
its own keeps the series' numbers (``first_frame``..``last_frame`` = its image_nr_low..high), so
frame 3 is the same image whether the master or ``data_000002`` is opened. Only the requested
frame's hyperslab is read (one chunk in DECTRIS files), never the dataset.

A series is written master first, then data file by data file: a frame the master counts whose
data file or chunk is not on disk yet is ``incomplete:`` (retry), not ``not_found:``.

Masked pixels: ``pixel_mask`` != 0, and pixels at 2**bits - 1, the value DECTRIS writes for
"no valid count" (gaps, dead pixels). The second rule matters for a data file without its
master: without it the module gaps of such a file are drawn as red saturated bars.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import h5py
import numpy as np

from pyis_common.errors import Unsupported
from worker import halves
from worker.formats import bslz4, hdf5_storage, nexus
from worker.formats import eiger_files as files
from worker.formats.base import Frame, basename, cannot_read, check_frame, common_meta, native
from worker.paths import Opened

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
MAGIC_AT = (0, 512, 1024, 2048)  # after a user block the superblock sits at a power of 2 >= 512
MASK = nexus.SPECIFIC + "/pixel_mask"
MASKS_KEPT = 4  # keys: each mask under two (a 16M mask is 18 MB as bool, ~60 ms to decode)
SUFFIXES = (".h5", ".hdf5", ".nxs")

_masks: OrderedDict[tuple, np.ndarray | None] = OrderedDict()
_masks_lock = threading.Lock()
_MISSING = object()


def _geometry(
    f: h5py.File, master: Opened, sources: list[files.Source], head: dict[str, Any]
) -> tuple[tuple[int, int], int, int, int]:
    """(rows, columns), bytes per pixel, first and last frame. A master's header says all of
    it (nimages x ntrigger), so no data file is opened; otherwise the data datasets are asked.
    """
    total = nexus.count(f)
    x = nexus.number(f, nexus.SPECIFIC + "/x_pixels_in_detector")
    y = nexus.number(f, nexus.SPECIFIC + "/y_pixels_in_detector")
    if total and x and y and "image_depth" in head and sources[0].file is not None:
        return (int(y), int(x)), int(head["image_depth"]), 1, total
    counted = 0
    for src in sources:
        with files.opened(f, master, src) as ds:
            shape, depth = (int(ds.shape[-2]), int(ds.shape[-1])), ds.dtype.itemsize
            if sources[0].name == "data":  # a data file alone: the images of the series it holds
                low, high = files.image_numbers(ds, 1)
                return shape, depth, low, high
            counted += files.stack_size(ds)
    return shape, depth, 1, total or counted


def _meta(f: h5py.File, master: Opened, sources: list[files.Source]) -> dict[str, Any]:
    head = nexus.to_meta(f)
    shape, depth, first, last = _geometry(f, master, sources, head)
    meta = head | common_meta(master.name, "eiger", shape, depth, last, first)
    if first != 1:  # the names this reader used before series numbering; kept for clients
        meta["image_nr_low"], meta["image_nr_high"] = first, last
    return meta


def _at_frame(name: str, meta: dict[str, Any], frame: int | None) -> int:
    """The frame asked for (None: the file's first), checked against the file's range."""
    frame = meta["first_frame"] if frame is None else frame
    check_frame(name, frame, meta["last_frame"], meta["first_frame"])
    meta["frame"] = frame
    nexus.frame_angles(meta, frame)
    return frame


def _pixel_mask(f: h5py.File, master: Opened, shape: tuple[int, int]) -> np.ndarray | None:
    """``pixel_mask`` != 0 (None when absent or empty), decoded once per mask: paging through
    a series must not decode an 18 MB mask for every frame, nor a new master of the same
    detector (a new series, a rewritten file) the same mask again. Kept under the file's
    version (no lookup at all for the next frame) and under a digest of the chunk it is stored
    in (a few hundred kB read, not 72 MB decoded)."""
    st = master.stat()  # the identity of the file we hold open, not of whatever has its name
    version = ("file", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, shape)
    mask = _kept(version)
    if mask is not _MISSING:
        return mask
    node = nexus.lookup(f, MASK)
    mask, stored = None, None
    if isinstance(node, h5py.Dataset) and node.ndim == 2:
        if node.shape != shape:
            raise Unsupported(f"{basename(master.name)} has a pixel_mask of another size")
        hdf5_storage.check_frame(node, 0, basename(master.name))
        try:
            chunk = bslz4.plane_chunk(node)
            if chunk is not None:
                digest = hashlib.blake2b(chunk, digest_size=16).digest()
                stored = ("stored", shape, node.dtype.str, digest)
            mask = _kept(stored) if stored is not None else _MISSING
            if mask is _MISSING:
                raw = bslz4.read_plane(node, chunk) if chunk is not None else None
                mask = _nonzero(node[()] if raw is None else raw)
        except (OSError, ValueError, TypeError) as exc:
            raise cannot_read(master.name, "an Eiger pixel mask", exc) from exc
    with _masks_lock:
        for key in (version, stored):
            if key is not None:
                _masks[key] = mask
        while len(_masks) > MASKS_KEPT:
            _masks.popitem(last=False)
    return mask


def _kept(key: tuple) -> Any:
    with _masks_lock:
        if key not in _masks:
            return _MISSING
        _masks.move_to_end(key)
        return _masks[key]


def _nonzero(raw: np.ndarray) -> np.ndarray | None:
    mask = np.not_equal(raw, 0)
    if not mask.any():
        return None
    mask.flags.writeable = False  # shared by every frame and thread
    return mask


def _invalid(data: np.ndarray, pixel: np.ndarray | None) -> np.ndarray | None:
    """Pixels at 2**bits - 1 or in the pixel mask (None if there are none), in halves on
    two cores for a big frame (worker/halves.py)."""
    mask, top = np.empty(data.shape, bool), np.iinfo(data.dtype).max

    def step(lo: int, hi: int) -> bool:
        part = halves.flat(mask)[lo:hi]
        np.equal(halves.flat(data)[lo:hi], top, out=part)
        if pixel is not None:
            np.logical_or(part, halves.flat(pixel)[lo:hi], out=part)
        return bool(part.any())

    return mask if any(halves.pieces(mask.size, step)) else None


class EigerReader:
    """Eiger/NeXus HDF5 through h5py and hdf5plugin's filters."""

    name = "eiger"

    def claims(self, head: bytes, name: str) -> bool:
        magic = any(head[at : at + 8] == HDF5_MAGIC for at in MAGIC_AT)
        return magic or name.lower().endswith(SUFFIXES)

    def read_meta(self, src: Opened, frame: int | None = None) -> dict[str, Any]:
        """Header datasets only; a master's data files are not opened when it has nimages.
        With ``frame``, that frame's values (angles) after checking it is in the file."""
        with files.open_file(src) as f:
            meta = _meta(f, src, files.data_sources(f, src))
        if frame is not None:
            _at_frame(src.name, meta, frame)
        return meta

    def read_frame(self, src: Opened, frame: int | None = None) -> Frame:
        """``frame`` None: the file's first image (image 3 of a data file holding 3-4)."""
        with files.open_file(src) as f:
            sources = files.data_sources(f, src)
            meta = _meta(f, src, sources)
            frame = _at_frame(src.name, meta, frame)
            total = meta["last_frame"] if sources[0].name != "data" else None
            data = native(files.read_image(f, src, sources, frame, total))
            pixel = _pixel_mask(f, src, data.shape)
        first, last = meta["first_frame"], meta["last_frame"]
        meta |= common_meta(src.name, "eiger", data.shape, data.dtype.itemsize, last, first)
        meta["frame"] = frame
        return Frame(
            data=data,
            mask=_invalid(data, pixel),
            saturation=meta.get("saturation"),
            meta=meta,
            scratch=True,  # decoded for this request: stage 1 may mask it in place
        )
