"""bench/scale.py: throughput with 1, 2 and 3 image hosts, each held to the same CPU share by a
cgroup CPU quota, and what a dead host costs.

Each image host is a network namespace (tests/support/netns.py) running a procmgr and its cache
Redis inside a cgroup of its own (``cpu.cfs_quota_us`` on cgroup v1, ``cpu.max`` on v2), so a
2-core machine can show scaling: ``scaling_ratio_N`` = throughput with N hosts / (N x the
throughput with one host), target >= 0.8. The clients (Lazy Pirate, tests/support/pirate_load.py)
and the proxy run unlimited in the web host's namespace. Warm requests (a few contrasts of one
frame per session, cached after the first), so a host's cost is routing, access and the worker.

Failover, with 3 hosts under load: one procmgr is SIGKILLed; ``detect_s`` is the time until
the proxy has given it up, ``answered_busy`` the requests it answered ``busy:`` for it.

Run as root: ``.venv/bin/python bench/scale.py``; writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import TESTDATA, table, write_json  # noqa: E402
from procmgr.__main__ import dev_user  # noqa: E402
from pyisdev.stack import Stack  # noqa: E402
from tests.support import netns  # noqa: E402
from tests.support.devsite import CBF  # noqa: E402
from tests.test_control import statistics  # noqa: E402

PERIOD_US = 100_000
QUOTA_US = 10_000  # 0.1 core per image host: the hosts, not the shared proxy, set the pace
CLIENTS = 12  # sessions, spread over the hosts by the sticky routing
LOADERS = 3  # client processes: one Python process of 12 threads would be the bottleneck
PER_CLIENT_PER_HOST = 25  # requests per client, times the number of hosts


def cgroup(name: str) -> Path:
    """A cgroup limited to QUOTA_US per PERIOD_US, on v2 or v1."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # v2
        path = root / name
        path.mkdir(exist_ok=True)
        (path / "cpu.max").write_text(f"{QUOTA_US} {PERIOD_US}")
    else:
        path = root / "cpu" / name
        path.mkdir(exist_ok=True)
        (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (path / "cpu.cfs_quota_us").write_text(str(QUOTA_US))
    return path


def remove_cgroup(path: Path) -> None:
    for pid in (path / "cgroup.procs").read_text().split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    for _ in range(100):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.05)  # its last processes are still exiting


def inside_cgroup(path: Path) -> tuple[str, ...]:
    return ("sh", "-c", 'echo $$ > "$0" && exec "$@"', str(path / "cgroup.procs"))


def load(stack: Stack, site: netns.Site, jobs: list[dict], per_client: int) -> dict:
    """LOADERS client processes at once; their summaries added up (elapsed: the longest)."""
    procs = [loader(stack, site, jobs[k::LOADERS], per_client, k) for k in range(LOADERS)]
    summaries = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    total = {key: sum(s[key] for s in summaries) for key in ("requests", "ok", "lost", "wrong")}
    total["max_retries"] = max(s["max_retries"] for s in summaries)
    total["busy_latency_max_s"] = max(s["busy_latency_max_s"] for s in summaries)
    return total | {"elapsed_s": max(s["elapsed_s"] for s in summaries)}


def loader(
    stack: Stack, site: netns.Site, jobs: list[dict], per_client: int, k: int
) -> subprocess.Popen:
    (stack.workdir / f"jobs{k}.json").write_text(json.dumps(jobs))
    return subprocess.Popen(
        [
            *site.inside(site.web),
            sys.executable,
            "-m",
            "tests.support.pirate_load",
            "--endpoint",
            stack.endpoint,
            "--jobs",
            str(stack.workdir / f"jobs{k}.json"),
            "--requests",
            str(per_client),
            "--progress",
            str(stack.workdir / f"progress{k}"),
            "--drain-ms",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )


def wait_for(check, timeout_s: float = 60.0, step_s: float = 0.02) -> float:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError("benchmark stuck")
        time.sleep(step_s)
    return time.monotonic() - t0


def kill_during_load(stack: Stack, pid: int) -> Future:
    """SIGKILL ``pid`` once the load is under way; the future: seconds until the proxy gave
    that host up."""

    def kill() -> float:
        name = f"{os.uname().nodename}:{pid}"
        progress = stack.workdir / "progress0"
        wait_for(lambda: progress.exists() and int(progress.read_text() or 0) >= 100)
        os.kill(pid, signal.SIGKILL)
        hosts = lambda: {h["name"] for h in statistics(stack.control)["hosts"]}  # noqa: E731
        return round(wait_for(lambda: name not in hosts()), 3)

    return ThreadPoolExecutor(1).submit(kill)


def run(n_hosts: int, base: Path, fail: bool) -> dict:
    workdir = base / f"run-{n_hosts}{'-fail' if fail else ''}"
    workdir.mkdir()
    os.chmod(workdir, 0o755)
    stack = Stack(workdir, ["--dev", str(base / "data")], stderr_dir=workdir)
    groups = [cgroup(f"pyis-scale-{i}") for i in range(1, n_hosts + 1)]
    try:
        with netns.site(n_hosts) as site:
            netns.start_web(stack, site)
            image = [
                netns.start_image_host(stack, site, i, inside_cgroup(groups[i - 1]))
                for i in range(1, n_hosts + 1)
            ]
            wait_for(lambda: len(statistics(stack.control)["hosts"]) == n_hosts)
            jobs = [
                {
                    "pid": stack.sign_session(dev_user(), [0]),
                    "esaf": 0,
                    "type": "jpeg",
                    "fn": "a.cbf",
                }
                for _ in range(CLIENTS)
            ]
            load(stack, site, jobs, 8)  # workers up, caches warm
            result: dict = {}
            if fail:
                result["detect_s"] = kill_during_load(stack, image[0].pid)
            summary = load(stack, site, jobs, PER_CLIENT_PER_HOST * n_hosts)
            if fail:
                result["detect_s"] = result["detect_s"].result(timeout=300)
            result |= {
                "hosts": n_hosts,
                "requests": summary["requests"],
                "ok": summary["ok"],
                "lost": summary["lost"] + summary["wrong"],
                "throughput_rps": round(summary["requests"] / summary["elapsed_s"], 1),
            }
            if fail:
                result["answered_busy"] = statistics(stack.control)["host_lost"]
                result["busy_latency_max_s"] = summary["busy_latency_max_s"]
                result["max_retries"] = summary["max_retries"]
            return result
    finally:
        stack.stop()
        for group in groups:
            remove_cgroup(group)


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    base = Path(tempfile.mkdtemp(prefix="pyis-scale-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        (base / "data").mkdir()
        shutil.copyfile(TESTDATA / CBF, base / "data" / "a.cbf")
        os.chmod(base / "data" / "a.cbf", 0o644)
        rows = [run(n, base, fail=False) for n in (1, 2, 3)]
        failover = run(3, base, fail=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    one = rows[0]["throughput_rps"]
    ratios = {
        f"scaling_ratio_{r['hosts']}": round(r["throughput_rps"] / (r["hosts"] * one), 3)
        for r in rows[1:]
    }
    print(table(rows, ["hosts", "requests", "ok", "lost", "throughput_rps"]))
    print(json.dumps(ratios), json.dumps(failover))
    payload = {
        "quota_cores_per_host": QUOTA_US / PERIOD_US,
        "clients": CLIENTS,
        "runs": rows,
        "failover": failover,
        "load_average": os.getloadavg(),
        "note": "2-core machine shared with other helpers' test runs and benches",
    } | ratios
    print("wrote", write_json("scale", payload))


if __name__ == "__main__":
    main()
