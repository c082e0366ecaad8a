"""bench/scale.py: throughput with 1, 2 and 3 image hosts, each held to the same CPU share by a
cgroup CPU quota, what a request costs each part, and what a dead host costs.

Each image host is a network namespace (tests/support/netns.py) running a procmgr and its cache
Redis inside a cgroup of its own (bench/cgroups.py: ``cpu.cfs_quota_us`` on cgroup v1,
``cpu.max`` on v2), so a 2-core machine can show scaling: ``scaling_ratio_N`` = throughput with
N hosts / (N x the throughput with one host), target >= 0.8. The clients (Lazy Pirate,
tests/support/pirate_load.py), the proxy and the session Redis run in a cgroup of their own
with no quota; every group of the bench has ``WEIGHT`` times an ordinary share of a busy CPU,
so other work on the machine slows neither the hosts below their quota nor the clients that
must keep them busy. Throughput is counted over a steady window (``--steady`` seconds, after
a ramp-up; the tail where the first clients stop is left out); ``--rounds`` repeats 1, 2, 3
hosts, and the ratios are of the median throughputs. Warm requests (a few contrasts
of one frame per session, cached after the first), so a host's cost is routing, access and the
worker. ``host_cpu_ms`` and ``proxy_cpu_ms`` per request: CPU used in the window / requests.

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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cgroups import CpuGroup, process_cpu_s  # noqa: E402
from bench.common import TESTDATA, table, write_json  # noqa: E402
from procmgr.__main__ import dev_user  # noqa: E402
from pyisdev.stack import Stack  # noqa: E402
from tests.support import netns, pirate_load  # noqa: E402
from tests.support.devsite import CBF  # noqa: E402
from tests.test_control import statistics as proxy_statistics  # noqa: E402

PERIOD_US = 100_000
HOST_CORES = 0.1  # per image host: the hosts, not the shared proxy and clients, set the pace
WEIGHT = 8  # the bench's groups against other work on the machine (cpu.shares / cpu.weight)
# sessions per image host, spread by the sticky routing: the same queue depth at every host
# count (a deeper queue lets a loop serve more per wake-up, which would flatter one host)
CLIENTS_PER_HOST = 8
LOADERS = 3  # client processes: one Python process of 24 threads would be the bottleneck
STARTUP_S = 2.0  # the loader processes are up and sending by then
RAMP_S = 2.0  # then every host is busy; the steady window starts
FAILOVER_PER_CLIENT = 40  # requests per client in the failover run


def loader(
    stack: Stack,
    site: netns.Site,
    wrap: tuple[str, ...],
    jobs: list[dict],
    k: int,
    extra: tuple[str, ...],
) -> subprocess.Popen:
    return subprocess.Popen(
        pirate_load.command(
            [*wrap, *site.inside(site.web)],
            stack.endpoint,
            jobs,
            stack.workdir / f"jobs{k}.json",
            stack.workdir / f"progress{k}",
            "--drain-ms",
            "0",
            *extra,
        ),
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )


def load(
    stack: Stack, site: netns.Site, wrap: tuple[str, ...], jobs: list[dict], *extra: str
) -> dict:
    """LOADERS client processes at once; their summaries added up (elapsed: the longest)."""
    procs = [loader(stack, site, wrap, jobs[k::LOADERS], k, extra) for k in range(LOADERS)]
    summaries = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    keys = ("requests", "ok", "lost", "wrong", "window_ok")
    total = {key: sum(s[key] for s in summaries) for key in keys}
    total["max_retries"] = max(s["max_retries"] for s in summaries)
    total["busy_latency_max_s"] = max(s["busy_latency_max_s"] for s in summaries)
    return total | {"elapsed_s": max(s["elapsed_s"] for s in summaries)}


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


def cpu_sample(stack: Stack, groups: list[CpuGroup]) -> tuple[float, float, int, int]:
    """CPU seconds of the image hosts and of the proxy; replies the hosts served; requests
    the proxy sent on."""
    stats = proxy_statistics(stack.control)
    served = sum(h["served"] for h in stats["hosts"])
    hosts_cpu = sum(g.usage_s() for g in groups)
    return hosts_cpu, process_cpu_s(stack.proxy.pid), served, stats["requests"]


def steady(
    stack: Stack,
    site: netns.Site,
    client_group: CpuGroup,
    groups: list[CpuGroup],
    jobs: list[dict],
    steady_s: float,
) -> dict:
    """Clients run from now to the window's end; throughput and costs within the window."""
    start = time.monotonic() + STARTUP_S + RAMP_S
    window = (start, start + steady_s)
    with ThreadPoolExecutor(1) as pool:
        until = ("--until", str(window[1]), "--requests", "1000000000")
        running = pool.submit(
            load, stack, site, client_group.wrap(), jobs, *until, "--window", *map(str, window)
        )
        sleep_until(window[0])
        before = cpu_sample(stack, groups)
        sleep_until(window[1])
        after = cpu_sample(stack, groups)
        summary = running.result(timeout=300)
    hosts_cpu, proxy_cpu, served, sent = (b - a for a, b in zip(before, after, strict=True))
    return {
        "requests": summary["requests"],
        "ok": summary["ok"],
        "lost": summary["lost"] + summary["wrong"],
        "window_ok": summary["window_ok"],
        "throughput_rps": round(summary["window_ok"] / steady_s, 1),
        "host_cpu_ms": round(1000 * hosts_cpu / max(1, served), 3),
        "proxy_cpu_ms": round(1000 * proxy_cpu / max(1, sent), 3),
    }


def wait_for(check: Callable[[], object], timeout_s: float = 60.0, step_s: float = 0.02) -> float:
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
        hosts = lambda: {h["name"] for h in proxy_statistics(stack.control)["hosts"]}  # noqa: E731
        return round(wait_for(lambda: name not in hosts()), 3)

    return ThreadPoolExecutor(1).submit(kill)


def run(n_hosts: int, base: Path, fail: bool, steady_s: float) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"run-{n_hosts}{'-fail' if fail else ''}-", dir=base))
    os.chmod(workdir, 0o755)
    stack = Stack(workdir, ["--dev", str(base / "data")], stderr_dir=workdir)
    clients = CpuGroup("pyis-scale-clients", None, WEIGHT, PERIOD_US)
    groups = [
        CpuGroup(f"pyis-scale-{i}", HOST_CORES, WEIGHT, PERIOD_US) for i in range(1, n_hosts + 1)
    ]
    try:
        with netns.site(n_hosts) as site:
            netns.start_web(stack, site, clients.wrap())
            image = [
                netns.start_image_host(stack, site, i, groups[i - 1].wrap())
                for i in range(1, n_hosts + 1)
            ]
            wait_for(lambda: len(proxy_statistics(stack.control)["hosts"]) == n_hosts)
            jobs = [
                {
                    "pid": stack.sign_session(dev_user(), [0]),
                    "esaf": 0,
                    "type": "jpeg",
                    "fn": "a.cbf",
                }
                for _ in range(CLIENTS_PER_HOST * n_hosts)
            ]
            load(stack, site, clients.wrap(), jobs, "--requests", "8")  # workers up, caches warm
            if not fail:
                return {"hosts": n_hosts} | steady(stack, site, clients, groups, jobs, steady_s)
            detect = kill_during_load(stack, image[0].pid)
            per_client = str(FAILOVER_PER_CLIENT * n_hosts)
            summary = load(stack, site, clients.wrap(), jobs, "--requests", per_client)
            return {
                "hosts": n_hosts,
                "requests": summary["requests"],
                "ok": summary["ok"],
                "lost": summary["lost"] + summary["wrong"],
                "detect_s": detect.result(timeout=300),
                "answered_busy": proxy_statistics(stack.control)["host_lost"],
                "busy_latency_max_s": summary["busy_latency_max_s"],
                "max_retries": summary["max_retries"],
            }
    finally:
        stack.stop()
        for group in [clients, *groups]:
            group.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steady", type=float, default=10.0, help="seconds counted per run")
    ap.add_argument("--rounds", type=int, default=2, help="1, 2, 3 hosts this many times")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pyis-scale-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        (base / "data").mkdir()
        shutil.copyfile(TESTDATA / CBF, base / "data" / "a.cbf")
        os.chmod(base / "data" / "a.cbf", 0o644)
        rows = [
            run(n, base, False, args.steady) | {"round": r}
            for r in range(1, args.rounds + 1)
            for n in (1, 2, 3)
        ]
        failover = run(3, base, True, args.steady)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    rps = {
        n: statistics.median(r["throughput_rps"] for r in rows if r["hosts"] == n)
        for n in (1, 2, 3)
    }
    ratios = {f"scaling_ratio_{n}": round(rps[n] / (n * rps[1]), 3) for n in (2, 3)}
    costs = {  # host_cpu_ms_per_request, proxy_cpu_ms_per_request: the sizing rule's inputs
        f"{part}_ms_per_request": round(statistics.median(r[f"{part}_ms"] for r in rows), 3)
        for part in ("host_cpu", "proxy_cpu")
    }
    columns = [
        "round",
        "hosts",
        "window_ok",
        "lost",
        "throughput_rps",
        "host_cpu_ms",
        "proxy_cpu_ms",
    ]
    print(table(rows, columns))
    print(json.dumps(ratios | costs), json.dumps(failover))
    payload = (
        {
            "quota_cores_per_host": HOST_CORES,
            "clients_per_host": CLIENTS_PER_HOST,
            "steady_s": args.steady,
            "throughput_rps_median": rps,
            "runs": rows,
            "failover": failover,
            "load_average": os.getloadavg(),
            "note": "2-core machine shared with other helpers' test runs and benches",
        }
        | ratios
        | costs
    )
    print("wrote", write_json("scale", payload))


if __name__ == "__main__":
    main()
