"""The folder a processing job writes its results into, inside the same ESAF home.

Derived data belongs to the experiment it came from: ``results/<kind>/<stem>-<UTC time>/`` in
the ESAF home, written as the user with the ESAF's group (the worker's own UID/GID). Every
component is created and opened with ``O_NOFOLLOW`` from a directory fd of the home, so a
``results`` symlink planted by another member cannot send the writes elsewhere. Modes are set
explicitly (workers run with umask 077): the shared parents ``2770`` so every member can add a
run, a run's folder ``2750`` and its files ``0640``, readable by the ESAF's group only.
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass

from pyis_common.errors import BadRequest, Forbidden

RESULTS = "results"
PARENT_MODE = 0o2770  # results/ and results/<kind>/: every member of the ESAF adds runs
FOLDER_MODE = 0o2750  # one run's folder: its owner writes, the ESAF's group reads
FILE_MODE = 0o640
FILE_UMASK = 0o027  # for the processes writing into it: group-readable, never world
MAX_STEM = 64
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Folder:
    """A run's results folder, open; ``name`` is its path relative to the ESAF home."""

    fd: int
    name: str

    @property
    def path(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    def write(self, filename: str, data: bytes) -> None:
        """A new file in the folder (never one that exists, never through a symlink)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(filename, flags, FILE_MODE, dir_fd=self.fd)
        try:
            os.fchmod(fd, FILE_MODE)
            os.write(fd, data)
        finally:
            os.close(fd)

    def files(self) -> list[str]:
        return sorted(os.listdir(self.fd))

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def stem_of(name: str) -> str:
    """A folder-name-safe stem of an input file's name (file names are data)."""
    base = name.rsplit("/", 1)[-1].split(".", 1)[0]
    return _UNSAFE.sub("_", base)[:MAX_STEM].strip("._") or "input"


def make(home: str, kind: str, stem: str, now: float | None = None) -> Folder:
    """Create ``results/<kind>/<stem>-<time>/`` below ``home`` (a suffix if that exists)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the admin's: followed
    try:
        for part in (RESULTS, kind):
            child = _enter(fd, part, PARENT_MODE, exist_ok=True)
            os.close(fd)
            fd = child
        for n in range(1, 100):
            name = f"{stem}-{stamp}" + (f"-{n}" if n > 1 else "")
            try:
                run = _enter(fd, name, FOLDER_MODE, exist_ok=False)
            except FileExistsError:
                continue
            return Folder(run, f"{RESULTS}/{kind}/{name}")
        raise BadRequest("too many results folders for this input in one second")
    finally:
        os.close(fd)


def _enter(parent: int, name: str, mode: int, exist_ok: bool) -> int:
    """Make (with ``mode``) or open directory ``name`` at ``parent``, never through a symlink."""
    try:
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
            created = True
        except FileExistsError:
            if not exist_ok:
                raise
            created = False
        fd = os.open(name, _DIR, dir_fd=parent)
        if created:
            os.fchmod(fd, mode)  # mkdir's mode passes through the worker's umask 077
        return fd
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Forbidden(f"the results folder {name!r} is not a directory") from None
        if exc.errno == errno.EACCES:
            raise Forbidden("cannot create the results folder: permission denied") from None
        raise BadRequest(f"cannot create the results folder: {exc.strerror}") from None
