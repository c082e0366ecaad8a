"""``list``: one directory inside the ESAF home, as the worker's user sees it.

The worker runs as the user with the ESAF's group, so the kernel decides what may be listed,
exactly as it decides what may be read; the directory is reached by the same no-follow walk as
any image (worker/paths.py) and read from its fd, and a path-bound token sees only what its
prefixes cover (worker/bound.py ``listable``). Files numbered like ``name_0001.cbf`` ...
``name_0090.cbf`` collapse into one series entry (template ``name_####.cbf``, first and last
number, count); HDF5 files (Eiger masters and data files) carry their frame count. Entries are
sorted (directories first) and paged, and the scan itself is bounded, so a directory of a
million files costs a bounded time. Names are data: they travel as JSON strings and nothing
here interprets them.

A symlink is shown as what a request for it would open: walked by the same rules (below the
home, within a path binding) and described by the fstat of what that walk opened. One that
leads out of the home, or out of a bound token's prefixes, is ``other``, with no size or time:
following it with ``stat`` showed the size and mtime of any file its target named (``/etc``, a
folder outside the binding), which neither a request nor a bound token could otherwise see.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyis_common.errors import BadRequest, Forbidden, PyisError
from pyis_common.request import Request
from pyis_common.request import _int as int_field  # the request's own integer rule
from worker import bound, formats, paths

if TYPE_CHECKING:
    from worker.jobs import Result

MAX_SCAN = 50_000  # directory entries looked at per request; the rest are reported as cut off
MAX_LIMIT = 500  # entries per page
DEFAULT_LIMIT = 200
MAX_HDF5_OPENS = 50  # frame counts per page: opening an HDF5 file costs a few milliseconds
MAX_LINK_WALKS = 1000  # symlinks walked per request (a walk is a few syscalls a component)
HDF5_SUFFIXES = (".h5", ".hdf5", ".nxs")
NUMBERED = re.compile(r"^(?P<stem>.*?)(?P<num>\d+)(?P<ext>(?:\.[A-Za-z][A-Za-z0-9]*)+)$")


@dataclass
class Series:
    template: str
    numbers: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    bytes: int = 0
    mtime: float = 0.0


def _scan(folder: paths.Opened, shown: str) -> tuple[list[os.DirEntry[str]], bool]:
    """The entries of the open directory (read from its fd: the name walked is never
    looked up again), at most MAX_SCAN of them."""
    entries: list[os.DirEntry[str]] = []
    try:
        with os.scandir(folder.fd) as it:
            for entry in it:
                if len(entries) >= MAX_SCAN:
                    return entries, True
                entries.append(entry)
    except PermissionError:
        raise Forbidden(f"permission denied: {shown[:200]}") from None
    except OSError as exc:
        raise BadRequest(f"cannot list {shown[:200]}: {exc.strerror}") from None
    return entries, False


def _printable_name(name: str) -> bool:
    """Names that are not valid UTF-8 (surrogate escapes) cannot travel as JSON strings."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


Walk = Callable[[str], os.stat_result | None]  # a symlink's name -> what a request opens


def _group(entries: list[os.DirEntry[str]], walk: Walk) -> tuple[list[dict[str, Any]], int]:
    """Directories, series and single files as entry dicts; and how many names were skipped.
    A symlink is described by ``walk`` (None: a request could not open it)."""
    out: list[dict[str, Any]] = []
    series: dict[tuple[str, int, str], Series] = {}
    skipped = 0
    for entry in entries:
        if not _printable_name(entry.name):
            skipped += 1
            continue
        try:
            st = walk(entry.name) if entry.is_symlink() else entry.stat(follow_symlinks=False)
        except OSError:
            st = None
        if st is None:
            out.append({"kind": "other", "name": entry.name})
            continue
        if stat.S_ISDIR(st.st_mode):
            out.append({"kind": "dir", "name": entry.name, "mtime": st.st_mtime})
            continue
        if not stat.S_ISREG(st.st_mode):
            out.append({"kind": "other", "name": entry.name})
            continue
        m = NUMBERED.match(entry.name)
        if m and not entry.name.lower().endswith(HDF5_SUFFIXES):
            num = m["num"]
            template = f"{m['stem']}{'#' * len(num)}{m['ext']}"
            s = series.setdefault((m["stem"], len(num), m["ext"]), Series(template))
            s.numbers.append(int(num))
            s.names.append(entry.name)
            s.bytes += st.st_size
            s.mtime = max(s.mtime, st.st_mtime)
            continue
        out.append({"kind": "file", "name": entry.name, "bytes": st.st_size, "mtime": st.st_mtime})
    for s in series.values():
        if len(s.names) == 1:
            out.append({"kind": "file", "name": s.names[0], "bytes": s.bytes, "mtime": s.mtime})
            continue
        first, last = min(s.numbers), max(s.numbers)
        out.append(
            {
                "kind": "series",
                "name": s.names[s.numbers.index(first)],
                "template": s.template,
                "first": first,
                "last": last,
                "count": len(s.numbers),
                "bytes": s.bytes,
                "mtime": s.mtime,
            }
        )
    return out, skipped


def _link_walker(home: str, rel: str) -> Walk:
    """The fstat of what a request for a symlink in ``rel`` opens: a file by
    ``paths.resolve``, a folder by ``paths.resolve_dir`` (both below the home and within the
    job's binding), None when neither does or past MAX_LINK_WALKS of them."""
    walks = 0

    def walk(name: str) -> os.stat_result | None:
        nonlocal walks
        walks += 1
        if walks > MAX_LINK_WALKS:
            return None
        fn = os.path.join(rel, name)
        for opener in (paths.resolve, paths.resolve_dir):
            try:
                with opener(home, fn) as opened:
                    return opened.stat()
            except BadRequest:  # not a regular file (a folder), or not a folder: the other
                continue
            except PyisError:  # out of the home or the binding, gone, not readable
                return None
        return None

    return walk


def _sort_key(entry: dict[str, Any]) -> tuple[int, str]:
    return (0 if entry["kind"] == "dir" else 1, entry.get("template", entry["name"]))


def _frame_counts(home: str, rel: str, page: list[dict[str, Any]]) -> None:
    """HDF5 files on this page get ``frames`` (or ``error``); at most MAX_HDF5_OPENS opens."""
    opened = 0
    for entry in page:
        if entry["kind"] != "file" or not entry["name"].lower().endswith(HDF5_SUFFIXES):
            continue
        entry["kind"] = "hdf5"
        if opened >= MAX_HDF5_OPENS:
            continue
        opened += 1
        try:
            # opened like any image (no-follow walk below the home): a symlink out of the
            # home gets its refusal, not its frame count
            with paths.resolve(home, os.path.join(rel, entry["name"])) as src:
                meta = formats.read_meta(src)
            entry["frames"] = int(meta.get("last_frame", 0)) - int(meta.get("first_frame", 1)) + 1
            entry["first_frame"] = int(meta.get("first_frame", 1))
        except PyisError as exc:
            entry["error"] = f"{exc.code}: {exc}"[:300]


def run(home: str, req: Request) -> Result:
    from worker.jobs import Result

    job: dict[str, Any] = req.raw
    offset = int_field(job, "offset", 0, 0, MAX_SCAN)
    limit = int_field(job, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    with paths.open_dir(home, req.fn) as folder:  # the no-follow walk below the home
        rel = folder.name
        visible = bound.listable(rel, req.fn or ".")  # a path-bound token sees its part only
        entries, cut_off = _scan(folder, rel or "/")
        if visible is not None:
            entries = [e for e in entries if visible(e.name)]
        listed, skipped = _group(entries, _link_walker(home, rel))
    if visible is not None:
        listed = [e for e in listed if e["kind"] != "dir"]  # a name prefix covers no folder
    listed.sort(key=_sort_key)
    page = listed[offset : offset + limit]
    _frame_counts(home, rel, page)
    meta = {
        "dir": rel,
        "parent": None if not rel else os.path.dirname(rel),
        "entries": page,
        "offset": offset,
        "limit": limit,
        "total": len(listed),
        "truncated": cut_off,
        "skipped_names": skipped,
    }
    return Result(job={}, meta=meta)
