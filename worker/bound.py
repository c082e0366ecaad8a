"""The path prefixes a path-bound token allows, for the job running on this thread.

The procmgr sends them beside the job (never inside it: the job is the client's object), and
the worker checks them against the name its own no-follow walk resolved (worker/paths.py), so
a ``..`` or a symlink in an allowed folder cannot reach outside it. A context variable carries
them to every ``paths.resolve`` of the job, whichever reader or job type calls it, and each
job thread sets its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from posixpath import dirname, join
from typing import Any

from authsign import pathclaim
from pyis_common.errors import Forbidden

_BOUND: ContextVar[tuple[str, ...] | None] = ContextVar("bound_paths", default=None)


class OutsideBound(Forbidden):
    """A file outside the token's prefixes (the procmgr writes the audit line for it)."""


def parse(value: Any) -> tuple[str, ...] | None:
    """The job header's ``paths``: None (not bound) or valid prefixes; anything else fails
    closed, so a garbled header never means "unbound"."""
    if value is None:
        return None
    if pathclaim.problem(value) is not None:
        raise Forbidden("the job's path binding is malformed")
    return tuple(value)


@contextmanager
def bound(prefixes: tuple[str, ...] | None) -> Iterator[None]:
    token = _BOUND.set(prefixes)
    try:
        yield
    finally:
        _BOUND.reset(token)


def current() -> tuple[str, ...] | None:
    return _BOUND.get()


def check(name: str, shown: str, is_dir: bool = False) -> None:
    """Refuse resolved ``name`` when the job is bound and no prefix covers it."""
    prefixes = _BOUND.get()
    if prefixes is not None and not pathclaim.covers(prefixes, name, is_dir):
        raise OutsideBound(f"outside the paths this token is bound to: {shown[:200]}")


def listable(name: str, shown: str) -> Callable[[str], bool] | None:
    """What a ``list`` of resolved directory ``name`` may show: None for all of it (unbound,
    or a folder prefix covers it), else a test of each entry's name (the directory holds a
    file or series prefix: only its covered names, never a subfolder). Any other directory,
    the ESAF root under a ``run7/`` token say, is refused."""
    prefixes = _BOUND.get()
    if prefixes is None or pathclaim.covers(prefixes, name, is_dir=True):
        return None
    here = tuple(p for p in prefixes if not p.endswith("/") and dirname(p) == name)
    if not here:
        raise OutsideBound(f"outside the paths this token is bound to: {shown[:200]}")
    return lambda entry: pathclaim.covers(here, join(name, entry))
