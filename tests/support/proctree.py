"""The procmgr's process tree as /proc shows it: procmgr -> zygote -> workers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

SPARE = "pyis-spare"  # procmgr/spares.py's NAME


def status_of(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent to reap it: some thread of it is not
    dead yet (a killed main thread is a zombie while its other threads still exit, holding
    the process's descriptors open; a spare has threads while it rehearses)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):  # gone, or reaped
        return False
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # this thread is gone
            continue
        if state not in ("Z", "X"):
            return True
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


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def ready_spare(zygote: int, timeout_s: float = 30.0) -> int:
    """A spare of the zygote's that has rehearsed and waits for an order: it takes the name
    ``pyis-spare`` (procmgr/spares.py) only once it has told the zygote so."""
    deadline = time.monotonic() + timeout_s
    while not (spares := sorted(p for p in children(zygote) if comm(p) == SPARE)):
        assert time.monotonic() < deadline, "the zygote has no spare waiting"
    return spares[0]


def worker_of(stack: Any, esaf: int, timeout_s: float = 30.0) -> int:
    """The pid of the dev user's worker for ``esaf``, as the procmgr knows it (the zygote's
    ``spawned`` report may come just after the worker's first reply: a wait with a deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = [w["pid"] for w in stack.status_detail()["workers"] if w["esaf"] == esaf]
        if pids and pids[0]:
            return int(pids[0])
        assert time.monotonic() < deadline, f"no worker for ESAF {esaf}"
