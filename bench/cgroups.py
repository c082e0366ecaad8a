"""CPU cgroups for benchmarks: a quota (the same CPU share for every image host), a weight (so a
load shared with other work on the machine does not starve what is measured), and the CPU time
used, to turn a throughput into a cost per request.

cgroup v1 (this machine: ``cpu`` and ``cpuacct`` mounted apart) and v2 (``cpu.max``,
``cpu.weight``, ``cpu.stat``) are both handled. Run as root.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
V1_WEIGHT_UNIT = 1024  # cpu.shares of an ordinary cgroup (and of each task in the root one)
V2_WEIGHT_UNIT = 100  # cpu.weight of an ordinary cgroup


def is_v2() -> bool:
    return (ROOT / "cgroup.controllers").exists()


class CpuGroup:
    """One cgroup named ``name``: at most ``quota_cores`` (None: no cap), ``weight`` times an
    ordinary group's share of a busy CPU."""

    def __init__(self, name: str, quota_cores: float | None, weight: int, period_us: int) -> None:
        if is_v2():
            self.dirs = [ROOT / name]
            self.dirs[0].mkdir(exist_ok=True)
            quota = "max" if quota_cores is None else str(int(quota_cores * period_us))
            (self.dirs[0] / "cpu.max").write_text(f"{quota} {period_us}")
            (self.dirs[0] / "cpu.weight").write_text(str(min(10000, weight * V2_WEIGHT_UNIT)))
            return
        self.dirs = [ROOT / "cpu" / name, ROOT / "cpuacct" / name]
        for path in self.dirs:
            path.mkdir(exist_ok=True)
        cpu = self.dirs[0]
        (cpu / "cpu.cfs_period_us").write_text(str(period_us))
        quota = -1 if quota_cores is None else int(quota_cores * period_us)
        (cpu / "cpu.cfs_quota_us").write_text(str(quota))
        (cpu / "cpu.shares").write_text(str(weight * V1_WEIGHT_UNIT))

    def wrap(self) -> tuple[str, ...]:
        """A command prefix that moves the command into this group, then runs it."""
        procs = " ".join(f'"{d / "cgroup.procs"}"' for d in self.dirs)
        return ("sh", "-c", f'for f in {procs}; do echo $$ > "$f"; done && exec "$@"', "cgroup")

    def usage_s(self) -> float:
        """CPU seconds used by every process that was in the group."""
        if is_v2():
            for line in (self.dirs[0] / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
            return 0.0
        return int((self.dirs[1] / "cpuacct.usage").read_text()) / 1e9

    def remove(self) -> None:
        """Kill what is left inside, then remove the group."""
        for pid in (self.dirs[0] / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        for path in self.dirs:
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)  # its last processes are still exiting


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
