"""Wait for a log line: the readiness check for things a process only says in its log."""

from __future__ import annotations

import time
from pathlib import Path

POLL_S = 0.05


def count(path: Path, text: str) -> int:
    return path.read_text(errors="replace").count(text) if path.exists() else 0


def wait_for(path: Path, text: str, timeout_s: float, at_least: int = 1) -> float:
    """Seconds until ``text`` appears ``at_least`` times in ``path``; fails past the deadline."""
    t0 = time.monotonic()
    while count(path, text) < at_least:
        elapsed = time.monotonic() - t0
        assert elapsed < timeout_s, f"{text!r} not in {path.name} within {timeout_s:.1f} s"
        time.sleep(POLL_S)  # polling a file: the wait is bounded by the deadline above
    return time.monotonic() - t0
