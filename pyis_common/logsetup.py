"""Logging to stderr (journald picks it up under systemd): one line per event, no secrets."""

from __future__ import annotations

import logging
import os


def setup_logging(ident: str, level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.INFO),
        format=f"%(asctime)s {ident}[{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
