"""Resolve a request's ``fn`` inside the ESAF home, or refuse it.

``..`` and symlinks are resolved first and the result must still lie inside the home; only
regular files are opened (a FIFO would hang a reader, a device is never an image). The kernel's
permission check, made as the worker's dropped UID/GID, stays the final word: we open the file
here once so that EACCES becomes a clear ``forbidden:``.
"""

from __future__ import annotations

import errno
import os
import stat

from pyis_common.errors import BadRequest, Forbidden, NotFound


def resolve(home: str, fn: str | None) -> tuple[str, os.stat_result]:
    """The real path of ``fn`` and its stat (the file identity later used by the caches)."""
    if not fn:
        raise BadRequest("'fn' names no file")
    if fn.rsplit("/", 1)[-1] in ("", "."):  # realpath would quietly drop a trailing "/" or "/."
        raise BadRequest("'fn' ends with '/' or '/.': it names a directory, not an image")
    base = os.path.realpath(home)
    real = os.path.realpath(os.path.join(base, fn))  # an absolute fn replaces base
    if os.path.commonpath([real, base]) != base:
        raise Forbidden("'fn' leaves the ESAF home")
    try:
        # look before opening: opening a device can have side effects, a FIFO can block
        if not stat.S_ISREG(os.stat(real).st_mode):
            raise BadRequest(f"not a regular file: {fn[:200]}")
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise NotFound(f"no such file: {fn[:200]}") from None
    except PermissionError:
        raise Forbidden(f"permission denied: {fn[:200]}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadRequest("'fn' is a symlink loop") from None
        raise BadRequest(f"cannot open {fn[:200]}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest(f"not a regular file: {fn[:200]}")
    return real, st
