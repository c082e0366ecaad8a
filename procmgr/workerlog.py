"""A worker's stderr: its own pipe, read by the procmgr and logged within a budget.

A worker never shares the procmgr's stderr (it could forge log lines or fill the journal):
each gets a pipe whose read end the procmgr polls. Lines are logged with the worker's name,
non-printable characters replaced, each cut to MAX_LINE characters, and at most BUDGET_BYTES
per worker per BUDGET_WINDOW_S; beyond that the rest is counted and dropped.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("procmgr.workers")
READ_CHUNK = 1 << 16  # one pipe's capacity
MAX_LINE = 300  # a traceback line, a library warning
BUDGET_BYTES = 16 << 10  # a traceback or two per window; a flood is a bug or an attack
BUDGET_WINDOW_S = 60.0


def printable(raw: bytes) -> str:
    """The text of a line with every control character (escape sequences too) made '?'."""
    text = raw.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


class StderrLog:
    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._partial = b""
        self._window_start = time.monotonic()
        self._left = BUDGET_BYTES
        self.dropped = 0

    def read(self, name: str) -> bool:
        """Log what the worker wrote; False at end of file (the worker is gone)."""
        try:
            data = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return True
        if not data:
            if self._partial:
                self._emit(name, self._partial)
                self._partial = b""
            return False
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > MAX_LINE:  # a line without end: log its start, drop the rest
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self._emit(name, line)
        return True

    def drain(self, name: str) -> None:
        """What is left in the pipe, before it is closed (a dying worker's traceback)."""
        for _ in range(BUDGET_BYTES // READ_CHUNK + 1):
            if not self.read(name):
                return

    def close(self) -> None:
        os.close(self.fd)

    def _emit(self, name: str, line: bytes) -> None:
        now = time.monotonic()
        if now - self._window_start >= BUDGET_WINDOW_S:
            if self.dropped:
                log.warning("%s wrote %d more bytes to stderr (not logged)", name, self.dropped)
            self._window_start, self._left, self.dropped = now, BUDGET_BYTES, 0
        if self._left <= 0:
            self.dropped += len(line) + 1
            return
        self._left -= len(line) + 1
        log.warning("%s stderr: %s", name, printable(line[:MAX_LINE]))
        if self._left <= 0:
            log.warning(
                "%s: stderr over %d bytes; dropping the rest for a while", name, BUDGET_BYTES
            )
