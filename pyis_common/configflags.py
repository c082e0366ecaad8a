"""Command-line flags from the settings declaration: one per key of a section, named by it.

``--the-key`` for every key (or the flag its declaration names), its doc as the help text; a
bool's flag sets the opposite of its default, a list's flag may be repeated. A flag wins over
the environment and the file (pyis_common/config.py); what a flag says is checked there, with
the same message as a bad value in the file.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyis_common.config import SECTIONS
from pyis_common.settings import Setting, settings_of

DEST_PREFIX = "setting_"  # argparse names of the generated flags, apart from a command's own
METAVARS: dict[type, str] = {int: "N", float: "X", str: "TEXT"}


def add_flags(ap: argparse.ArgumentParser, section: str, skip: tuple[str, ...] = ()) -> None:
    """A flag for every key of ``section`` (but ``skip``), in a group of its own."""
    group = ap.add_argument_group(f"[{section}] settings (flags win over PYIS_* and the file)")
    for s in settings_of(SECTIONS[section], section):
        if s.name in skip:
            continue
        dest, doc = DEST_PREFIX + s.name, _help(s)
        if s.kind is bool:
            group.add_argument(
                s.flag, dest=dest, action="store_const", const=not s.default, help=doc
            )
        elif s.kind is tuple:
            group.add_argument(s.flag, dest=dest, action="append", metavar="VALUE", help=doc)
        else:
            group.add_argument(s.flag, dest=dest, metavar=METAVARS[s.kind], help=doc)


def overrides(args: argparse.Namespace, section: str) -> dict[str, dict[str, Any]]:
    """What the generated flags of ``section`` said: ``{section: {key: value}}`` for config.load."""
    given = {
        name[len(DEST_PREFIX) :]: value
        for name, value in vars(args).items()
        if name.startswith(DEST_PREFIX) and value is not None
    }
    return {section: given}


def _help(s: Setting) -> str:
    default = ",".join(s.default) if s.kind is tuple else s.default
    return f"{s.spec.doc} (default: {default!r})".replace("%", "%%")
