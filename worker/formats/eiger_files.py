"""Eiger HDF5 files: which data datasets a master (or a data file) has, where the external
links lead, and the one hyperslab of a frame.

External links are followed here only: :func:`link_target` refuses absolute names and ``..``,
and the data file is then opened below the master's folder by the same no-follow walk as the
master itself (:func:`worker.paths.open_beneath`, from the folder fd the master was found in),
so a symlink swapped in leads nowhere outside. Every other lookup goes through
:func:`nexus.lookup`, which never follows one. HDF5 itself is never asked to resolve an
external link (its search path includes the working directory and an environment prefix), so a
missing data file is our sentence, not its error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  registers bitshuffle/LZ4 (32008), LZ4 (32004), ... at import
import numpy as np

from pyis_common.errors import Forbidden, Incomplete, NotFound, Unsupported
from worker.formats import bslz4, budget, hdf5_storage, nexus
from worker.formats.base import basename, cannot_read, out_of_memory
from worker.paths import Opened, open_beneath

DATA = "/entry/data"
_LINK = re.compile(r"data_\d+")


@dataclass(frozen=True)
class Source:
    """One data dataset: in the opened file (``file`` None) or in a data file, named by the
    link relative to the master's folder."""

    name: str
    file: str | None
    path: str


def open_file(src: Opened) -> h5py.File:
    """Read-only and without HDF5's file locks: beamline file systems are often read-only."""
    try:
        return h5py.File(src.path, "r", locking=False)
    except FileNotFoundError as exc:
        raise NotFound(f"{basename(src.name)} does not exist") from exc
    except PermissionError as exc:
        raise Forbidden(f"{basename(src.name)} is not readable by this user") from exc
    except OSError as exc:
        if "truncated file" in str(exc):  # HDF5's words for an end of file before its own end
            raise Incomplete(
                f"{basename(src.name)} is shorter than HDF5 says: still being written; try again"
            ) from exc
        raise cannot_read(src.name, "an HDF5 file", exc) from exc


def link_target(master: Opened, filename: str) -> str:
    """The data file an external link names: beside the master (the Eiger convention) or below
    it. Absolute names and ``..`` are refused here, symlinks leading out by the walk.
    """
    if os.path.isabs(filename) or ".." in PurePosixPath(filename).parts:
        raise Forbidden(_outside(master, filename))
    return filename


def _outside(master: Opened, filename: str) -> str:
    return f"{basename(master.name)} links to {filename[:200]!r}, outside its folder"


def data_sources(f: h5py.File, master: Opened) -> list[Source]:
    """``data_NNNNNN`` links in series order (a master), else the file's own ``data``."""
    group = nexus.lookup(f, DATA)
    names = list(group) if isinstance(group, h5py.Group) else []
    picked = sorted(n for n in names if _LINK.fullmatch(n)) or [n for n in names if n == "data"]
    if not picked or not isinstance(group, h5py.Group):  # picked: group is a Group
        raise Unsupported(f"{basename(master.name)} is an HDF5 file without Eiger images in {DATA}")
    out = []
    for name in picked:
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            out.append(Source(name, link_target(master, link.filename), link.path))
        else:
            out.append(Source(name, None, f"{DATA}/{name}"))
    return out


def checked_stack(node: Any, shown: str) -> h5py.Dataset:
    """A frame stack we can read: 2-D or 3-D integer counts, raw data inside the file."""
    name = basename(shown)
    if not isinstance(node, h5py.Dataset) or node.ndim not in (2, 3) or node.dtype.kind not in "iu":
        raise Unsupported(f"{name} holds no 2-D or 3-D integer image data where Eiger files do")
    if node.is_virtual or node.external:
        raise Forbidden(f"{name} keeps its pixels in other files (virtual or external storage)")
    budget.check(name, node.shape[-2:], node.dtype.itemsize, None)
    return node


@contextmanager
def opened(f: h5py.File, master: Opened, src: Source) -> Iterator[h5py.Dataset]:
    """The source's dataset, its data file open only as long as needed."""
    if src.file is None:
        yield checked_stack(nexus.lookup(f, src.path), master.name)
        return
    try:
        data = open_beneath(master.folder_fd, src.file, src.file)
    except NotFound:  # DECTRIS writes the master first, then the data files as they fill
        missing = (
            f"{basename(master.name)} needs the data file {basename(src.file)}, which is not "
            "there (yet): the series may still be being written; try again"
        )
        raise Incomplete(missing) from None
    except Forbidden:
        raise Forbidden(_outside(master, src.file)) from None
    with data, open_file(data) as data_file:
        yield checked_stack(nexus.lookup(data_file, src.path), data.name)


def stack_size(ds: h5py.Dataset) -> int:
    """Frames in a dataset: a 2-D dataset is one frame."""
    return int(ds.shape[0]) if ds.ndim == 3 else 1


def image_numbers(ds: h5py.Dataset, start: int) -> tuple[int, int]:
    """Images first..last held by ``ds``: its attributes when they agree with its size."""
    n = stack_size(ds)
    try:
        low, high = int(ds.attrs["image_nr_low"]), int(ds.attrs["image_nr_high"])
    except (KeyError, TypeError, ValueError, OSError):
        return start, start + n - 1
    return (low, high) if high - low + 1 == n and low >= 1 else (start, start + n - 1)


def unwritten(ds: h5py.Dataset, index: int) -> bool:
    """Whether frame ``index`` of a (frames, H, W) stack of one-frame chunks is still to be
    written: its chunk is not on disk (HDF5 would hand back its fill value) while earlier ones
    are. A stack with no chunk written at all is a bomb, not a series in progress, and a chunk
    that is there but implausibly small too: :mod:`hdf5_storage` refuses those."""
    if ds.ndim != 3 or ds.chunks is None or ds.chunks[0] != 1:
        return False
    try:
        missing = ds.id.get_chunk_info_by_coord((index, 0, 0)).byte_offset is None
        return missing and ds.id.get_num_chunks() > 0
    except (OSError, ValueError, RuntimeError, AttributeError):
        return False  # an older HDF5 without the calls: the storage check decides


def read_image(
    f: h5py.File, master: Opened, sources: list[Source], frame: int, total: int | None = None
) -> np.ndarray:
    """The one hyperslab of ``frame``; data files are opened in order until one holds it.
    ``total``: the images the master counts, so a frame beyond the files is still to come."""
    start = 1
    for src in sources:
        with opened(f, master, src) as ds:
            low, high = image_numbers(ds, start)
            if low <= frame <= high:
                if unwritten(ds, frame - low):
                    raise Incomplete(
                        f"frame {frame} of {basename(master.name)} is not written yet; try again"
                    )
                hdf5_storage.check_frame(ds, frame - low, basename(src.file or master.name))
                try:
                    if ds.ndim != 3:
                        return ds[()]
                    direct = bslz4.read_frame(ds, frame - low)
                    return direct if direct is not None else ds[frame - low]
                except MemoryError as exc:
                    raise out_of_memory(master.name) from exc
                except (OSError, ValueError, RuntimeError) as exc:
                    raise cannot_read(src.file or master.name, "an Eiger frame", exc) from exc
            start = high + 1
    if total is not None and frame <= total:
        raise Incomplete(f"frame {frame} of {basename(master.name)} is not written yet; try again")
    raise NotFound(f"{basename(master.name)} has no data file holding frame {frame}")
