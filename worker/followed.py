"""What a ``newest`` request follows: a directory, a series template or an Eiger master.

A frame counts as complete only when its writer says so: a file closed after writing
(``IN_CLOSE_WRITE``) or renamed into place (``IN_MOVED_TO``), never when it is created; an
Eiger frame once its data file holds it (the data file's frame count, read SWMR when the file
was written that way, and only frames whose chunk is on disk). Names are data: a template's
``#``/``?`` runs match digits only, hidden names (``.x.cbf``) and names that are not images
(``x.cbf.tmp``) are never offered, so a writer's temporary file stays invisible.
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass

import h5py

from pyis_common.errors import BadRequest
from worker import paths

# the images a detector writes one file per frame (compressed copies too)
IMAGE_NAME = re.compile(
    r"[^.].*\.(cbf|img|mccd|mar\d+|tif|tiff|edf|sfrm|osc|smv|dcm)(\.gz|\.bz2)?", re.IGNORECASE
)
MASTER_SUFFIX = "_master.h5"
EIGER_DATA = "entry/data/data"
# a file already there when a follower starts is offered only if it has not changed for this
# long: one still being written shows up later, on its close or rename
SETTLED_S = 2.0


@dataclass(frozen=True)
class Frame:
    """A complete frame: ``fn`` relative to the home, ``frame`` within it (Eiger: the
    series' frame number), ``seen`` when the worker learnt it was complete (perf_counter)."""

    fn: str
    frame: int
    seen: float


class Target:
    """One followed series in one open directory (``folder``, walked from the home)."""

    def __init__(self, folder: paths.Opened, kind: str, pattern: str) -> None:
        self.folder = folder
        self.kind = kind  # "dir", "template" or "eiger"
        self.pattern = pattern  # the template, or the Eiger prefix; "" for a directory
        st = folder.stat()
        self.key = (st.st_dev, st.st_ino, kind, pattern)
        if kind == "template":
            runs = re.split(r"([#?]+)", pattern)
            self._match = re.compile(
                "".join(rf"\d{{{len(p)}}}" if p[:1] in "#?" else re.escape(p) for p in runs)
            )
        elif kind == "eiger":
            self._match = re.compile(re.escape(pattern) + r"_data_(\d{6})\.h5")
        else:
            self._match = IMAGE_NAME
        self.master = f"{pattern}{MASTER_SUFFIX}" if kind == "eiger" else ""

    def fn(self, name: str) -> str:
        return f"{self.folder.name}/{name}" if self.folder.name else name

    def matches(self, name: str) -> bool:
        return self._match.fullmatch(name) is not None

    def completed(self, name: str, seen: float, written: bool) -> Frame | None:
        """The frame an event on ``name`` completed, or None. ``written``: the file was
        closed or renamed into place (a data file still open may only count what is on
        disk)."""
        if not self.matches(name):
            return None
        if self.kind != "eiger":
            return Frame(self.fn(name), 1, seen) if written else None
        last = self._eiger_last(name)
        return Frame(self.fn(self.master), last, seen) if last else None

    def newest_settled(self) -> Frame | None:
        """The newest frame already there when following starts (see ``SETTLED_S``)."""
        if self.kind == "eiger":
            names = sorted(n for n in self._names() if self.matches(n))
            for name in reversed(names):
                last = self._eiger_last(name)
                if last:
                    return Frame(self.fn(self.master), last, time.perf_counter())
            return None
        best: tuple[float, str] | None = None
        cutoff = time.time() - SETTLED_S
        for name in self._names():
            if not self.matches(name):
                continue
            try:
                st = os.stat(name, dir_fd=self.folder.fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mtime <= cutoff:
                best = max(best or (st.st_mtime, name), (st.st_mtime, name))
        return Frame(self.fn(best[1]), 1, time.perf_counter()) if best else None

    def _names(self) -> list[str]:
        try:
            return os.listdir(self.folder.fd)
        except OSError:
            return []

    def _eiger_last(self, name: str) -> int:
        """The series' number of the last frame on disk in data file ``name`` (0: none)."""
        found = self._match.fullmatch(name)
        if found is None:
            return 0
        count, low = _data_file_frames(self.folder.fd, name)
        if count and low is None:  # unnumbered: the earlier data files hold the frames before
            earlier = range(1, int(found.group(1)))
            low = 1 + sum(_data_file_frames(self.folder.fd, self._data_name(i))[0] for i in earlier)
        return (low or 1) + count - 1 if count else 0

    def _data_name(self, k: int) -> str:
        return f"{self.pattern}_data_{k:06d}.h5"

    def close(self) -> None:
        self.folder.close()


def _data_file_frames(folder_fd: int, name: str) -> tuple[int, int | None]:
    """(frames on disk, ``image_nr_low``) of an Eiger data file; (0, None) while unreadable.
    Trailing frames whose chunk is not written yet are not counted."""
    try:
        src = paths.open_beneath(folder_fd, name, name)
    except Exception:
        return 0, None
    with src:
        try:
            with _open_h5(src.path) as f:
                ds = f.get(EIGER_DATA)
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 3:
                    return 0, None
                count = int(ds.shape[0])
                while count and ds.chunks and not _chunk_written(ds, count - 1):
                    count -= 1
                low = ds.attrs.get("image_nr_low")
                return count, int(low) if low is not None and int(low) >= 1 else None
        except (OSError, KeyError, ValueError, TypeError, RuntimeError):
            return 0, None


def _open_h5(path: str) -> h5py.File:
    """SWMR when the writer wrote that way (its appended frames are then consistent)."""
    try:
        return h5py.File(path, "r", locking=False, swmr=True)
    except (OSError, ValueError):
        return h5py.File(path, "r", locking=False)


def _chunk_written(ds: h5py.Dataset, index: int) -> bool:
    try:
        info = ds.id.get_chunk_info_by_coord((index, 0, 0))
    except (OSError, ValueError, RuntimeError):
        return False
    return info.byte_offset is not None and info.size > 0


def target(home: str, fn: str | None) -> Target:
    """The series ``fn`` names, its directory walked and opened as the session's user: a
    directory it may not read is ``forbidden:`` here, before any watch exists."""
    if not fn:
        raise BadRequest("'fn' names no directory, template or Eiger master to follow")
    head, _, base = fn.rstrip("/").rpartition("/")
    if base.endswith(MASTER_SUFFIX) and len(base) > len(MASTER_SUFFIX):
        paths.resolve(home, fn).close()  # the master itself must be readable
        return Target(paths.resolve_dir(home, head or "."), "eiger", base[: -len(MASTER_SUFFIX)])
    if "#" in base or "?" in base:
        if "/" in base or len(base) > 255:
            raise BadRequest("'fn' is not a series template")
        return Target(paths.resolve_dir(home, head or "."), "template", base)
    return Target(paths.resolve_dir(home, fn), "dir", "")
