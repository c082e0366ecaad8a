"""The procmgr's process tree as /proc shows it: procmgr -> zygote -> workers."""

from __future__ import annotations

import time
from pathlib import Path


def status_of(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or reaped while we read it
        return False


def children(ppid: int) -> set[int]:
    """Live children of ``ppid`` (zombies waiting to be reaped are not workers)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = status_of(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(status.get("PPid", -1)) == ppid and not status["State"].startswith("Z"):
                out.add(int(entry.name))
    return out


def zygote_of(procmgr_pid: int) -> int:
    (zygote,) = children(procmgr_pid)
    return zygote


def new_worker(procmgr_pid: int, before: set[int], timeout_s: float = 30.0) -> int:
    """The one worker that appeared since ``before`` (a readiness wait with a deadline)."""
    deadline = time.monotonic() + timeout_s
    while not (fresh := children(zygote_of(procmgr_pid)) - before):
        assert time.monotonic() < deadline, "no new worker appeared"
    (pid,) = fresh
    return pid
