"""The ``paths`` claim: prefixes inside the ESAF home that bound a token to one dataset.

A prefix ending in ``/`` covers a directory and everything below it (``run7/``); one without
covers the names in its directory that start with it (``run7/a_`` is a series, ``run7/a.h5``
one file) but nothing in a subdirectory, so ``run7`` cannot be read as ``run7b/``. Prefixes are
compared with the name the worker's no-follow walk resolved, never the name a client sent, so
``..`` and symlinks cannot widen them. A malformed list is refused at signing and again at
verification: an absolute name, ``.``/``..`` or empty components, an empty string or list.
"""

from __future__ import annotations

from typing import Any

MAX_PATHS = 64  # a link names one dataset; a token is bounded in size anyway
MAX_PATH = 4096  # PATH_MAX


def problem(value: Any) -> str | None:
    """Why ``value`` is not a valid ``paths`` claim, or None when it is."""
    if not isinstance(value, list) or not value:
        return "paths must be a non-empty list of prefixes"
    if len(value) > MAX_PATHS:
        return f"paths holds more than {MAX_PATHS} prefixes"
    for prefix in value:
        if not isinstance(prefix, str) or not prefix:
            return "every path prefix must be a non-empty string"
        if len(prefix) > MAX_PATH or not prefix.isprintable():
            return "a path prefix is too long or holds a control character"
        if prefix.startswith("/"):
            return "a path prefix is relative to the ESAF home, never absolute"
        parts = prefix.split("/")
        if parts[-1] == "":
            parts.pop()  # the one trailing "/" of a directory prefix
        if any(part in ("", ".", "..") for part in parts):
            return "a path prefix may not hold '.', '..' or empty components"
    return None


def covers(prefixes: tuple[str, ...], name: str, is_dir: bool = False) -> bool:
    """Whether resolved ``name`` (relative to the home; "" is the home) lies within a prefix."""
    if is_dir:
        name = name.rstrip("/") + "/" if name else ""
    for prefix in prefixes:
        if not name.startswith(prefix):
            continue
        if prefix.endswith("/") or "/" not in name[len(prefix) :]:
            return True
    return False
