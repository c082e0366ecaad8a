"""``--version`` on every command: the installed distribution's version, the same for all."""

from __future__ import annotations

import argparse
from importlib import metadata

DISTRIBUTION = "pyis"


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def add_version(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--version", action="version", version=f"%(prog)s {version()}")
