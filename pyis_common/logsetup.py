"""Logging to stderr (journald picks it up under systemd): one line per event, no secrets."""

from __future__ import annotations

import logging
import os


def setup_logging(ident: str, level: str = "INFO") -> None:
    # the format names none of these, and the procmgr writes a line per request: the logging
    # HOWTO's optimizations (no caller frame lookup, no thread, process or task lookups)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.INFO),
        format=f"%(asctime)s {ident}[{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
