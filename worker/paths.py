"""Resolve a request's ``fn`` inside the ESAF home once, and hold the file open.

A path checked and then opened again by name can be changed in between: a directory swapped
for a symlink mid-request once made replies read a file outside the home, and the caches then
served that image under the unchanged file's identity. So the name is walked one component at a
time from a directory fd of the home, every component opened with ``O_NOFOLLOW``; a symlink is
read (``readlink`` at its directory fd) and followed only while it stays below the home; ``..``
never climbs above it. The result is an :class:`Opened` file: every reader opens its
``/proc/self/fd/N`` name (the same inode, whatever happens to the name since), and the caches
take its identity from ``fstat`` of that fd. Only regular files are opened (a FIFO would hang a
reader, a device is never an image). The kernel's permission check, made as the worker's
dropped UID/GID, stays the final word: EACCES becomes a clear ``forbidden:``.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from pyis_common.errors import BadRequest, Forbidden, NotFound
from worker import bound

MAX_HOPS = 40  # symlinks followed in one walk (the kernel's own limit)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


@dataclass
class Opened:
    """One image file, resolved and open for the length of a request.

    ``name`` is its path below the root it was resolved in (for messages and the cache key),
    ``folder_fd`` the directory holding it (data files an Eiger master links to are resolved
    from there, under the same rules).
    """

    fd: int
    folder_fd: int
    name: str

    @property
    def path(self) -> str:
        """A name every library can open that always means this open file."""
        return f"/proc/self/fd/{self.fd}"

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def close(self) -> None:
        for fd in (self.fd, self.folder_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @classmethod
    def plain(cls, path: str) -> Opened:
        """A file named by a trusted caller (tools, tests, benchmarks): opened as named."""
        folder = os.open(os.path.dirname(os.path.abspath(path)) or "/", os.O_RDONLY | os.O_CLOEXEC)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            os.close(folder)
            raise
        return cls(fd, folder, os.path.basename(path))


def resolve(home: str, fn: str | None) -> Opened:
    """``fn`` (relative to the home, or absolute inside it) opened below the home, and within
    the prefixes of the job's path-bound token, if any (worker/bound.py)."""
    if not fn:
        raise BadRequest("'fn' names no file")
    if fn.rsplit("/", 1)[-1] in ("", "."):  # a trailing "/" names a directory, never an image
        raise BadRequest("'fn' ends with '/' or '/.': it names a directory, not an image")
    root = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the admin's: followed
    try:
        opened = open_beneath(root, _inside(home, fn), fn)
    finally:
        os.close(root)
    try:
        bound.check(opened.name, fn)  # a path-bound token: the resolved name, not the asked one
    except Forbidden:
        opened.close()
        raise
    return opened


def _inside(home: str, fn: str) -> str:
    """``fn`` relative to the home; an absolute name must start with the home's path."""
    if not os.path.isabs(fn):
        return fn
    for prefix in {os.path.normpath(home), os.path.realpath(home)}:
        if fn.rstrip("/") == prefix.rstrip("/"):
            return "."  # the home itself (a listing of it)
        if fn.startswith(prefix.rstrip("/") + "/"):
            return fn[len(prefix.rstrip("/")) + 1 :]
    raise Forbidden("'fn' leaves the ESAF home")


def open_dir(home: str, fn: str | None) -> Opened:
    """The directory ``fn`` names below the home (the home itself for "" or "."), walked by
    the same rules and open (``fd``), not yet checked against a path binding: a listing
    decides what of it a bound token may see (worker/bound.py ``listable``)."""
    root = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return open_beneath(root, _inside(home, fn or "."), fn or ".", directory=True)
    finally:
        os.close(root)


def resolve_dir(home: str, fn: str | None) -> Opened:
    """The directory ``fn`` names, open and within the job's path binding as a whole: a
    follower watches it as the session's own user."""
    opened = open_dir(home, fn)
    try:
        bound.check(opened.name, fn or ".", is_dir=True)  # every frame in it is then covered
    except Forbidden:
        opened.close()
        raise
    return opened


def open_beneath(root_fd: int, rel: str, shown: str, *, directory: bool = False) -> Opened:
    """Walk ``rel`` from ``root_fd`` without ever leaving it; ``shown`` names it in errors.
    The last component must be a regular file, or with ``directory`` a directory."""
    stack = [os.dup(root_fd)]  # directory fds from the root down; names[i] is stack[i + 1]
    names: list[str] = []
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    hops = 0
    try:
        while parts:
            part = parts.pop(0)
            if part == "..":
                if not names:
                    raise Forbidden("'fn' leaves the ESAF home")
                os.close(stack.pop())
                names.pop()
                continue
            st = _lstat(part, stack[-1], shown)
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_HOPS:
                    raise BadRequest("'fn' is a symlink loop")
                target = _readlink(part, stack[-1], shown)
                if target is None:  # no longer a symlink: walk it again
                    parts.insert(0, part)
                    continue
                if os.path.isabs(target):
                    target = _below_root(stack[0], target)
                    for walked in stack[1:]:
                        os.close(walked)
                    del stack[1:], names[:]
                parts[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            if parts or directory:  # a directory on the way, or the one asked for
                if not stat.S_ISDIR(st.st_mode) and not parts:
                    raise BadRequest(f"not a directory: {shown[:200]}")
                if not stat.S_ISDIR(st.st_mode):
                    raise NotFound(f"no such file: {shown[:200]}")
                fd = _open(part, stack[-1], _DIR, shown)
                if fd is None:  # became a symlink since the lstat: walk it again
                    parts.insert(0, part)
                    hops += 1
                    continue
                stack.append(fd)
                names.append(part)
                if not parts:
                    fd = stack.pop()
                    return Opened(fd, stack.pop(), "/".join(names))
                continue
            if not stat.S_ISREG(st.st_mode):
                raise BadRequest(f"not a regular file: {shown[:200]}")
            fd = _open(part, stack[-1], _FILE, shown)
            if fd is None:
                parts.insert(0, part)
                hops += 1
                continue
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise BadRequest(f"not a regular file: {shown[:200]}")
            opened = Opened(fd, stack.pop(), "/".join([*names, part]))
            return opened
        if directory:  # the walk ended on a directory: the home, or one ".." led back to
            fd = stack.pop()
            return Opened(fd, stack.pop() if stack else os.dup(fd), "/".join(names))
        raise BadRequest(f"not a regular file: {shown[:200]}")  # the home itself, or a folder
    finally:
        for left in stack:
            os.close(left)


def _below_root(root_fd: int, target: str) -> str:
    """An absolute symlink target as a path below the root, or ``forbidden:``."""
    root = os.readlink(f"/proc/self/fd/{root_fd}").rstrip("/")
    if target == root or not target.startswith(root + "/"):
        raise Forbidden("'fn' leaves the ESAF home")
    return target[len(root) + 1 :]


def _lstat(part: str, dir_fd: int, shown: str) -> os.stat_result:
    try:
        return os.stat(part, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise _refusal(exc, shown) from None


def _readlink(part: str, dir_fd: int, shown: str) -> str | None:
    try:
        return os.readlink(part, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return None
        raise _refusal(exc, shown) from None


def _open(part: str, dir_fd: int, flags: int, shown: str) -> int | None:
    """The fd, or None when ``part`` turned into a symlink between lstat and open."""
    try:
        return os.open(part, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return None
        raise _refusal(exc, shown) from None


def _refusal(exc: OSError, shown: str) -> BadRequest | Forbidden | NotFound:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFound(f"no such file: {shown[:200]}")
    if exc.errno == errno.EACCES:
        return Forbidden(f"permission denied: {shown[:200]}")
    return BadRequest(f"cannot open {shown[:200]}: {exc.strerror}")
