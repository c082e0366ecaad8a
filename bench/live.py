"""Following a collection live (issue 16): from the detector closing a frame to its JPEG here.

A writer process writes real Pilatus 6M frames (copies of the CBFs in ../shared/testdata, the
way detectors write them: every other frame written then closed, the rest written to a hidden
temporary name and renamed into place) at 10, 25 and 100 Hz, and an Eiger series appended frame
by frame to its data file at 10 Hz. A follower (``newest`` long-polls, one outstanding) records
when each JPEG arrives. Per frame shown, the latency is arrival - the writer's close/rename
(both CLOCK_MONOTONIC, one host). Then the cold time of the same frames in the same run: a
``jpeg`` request for a fresh copy (a new file, so nothing is cached).

- ``latency_ratio`` = p50 latency / p50 cold time of the same frames. Target <= 1.5.
- ``p99_ratio`` = p99 latency / p50 cold. Target <= 3.
- ``shown``: the fraction of frames shown. Target at 10 Hz: 1.0.
- ``behind_max``: sampled as each frame completes, how many complete frames are newer than
  the one on screen. Target at 100 Hz: <= 2. ``age_ms``: how old the frame on screen is then.
- ``server_cpu``: CPU seconds of proxy, procmgr and workers per second of the run (cores).
- ``render_p50_ms``: the worker's own time for a shown frame (read + reduce + map + encode),
  ``load_average``: the host's 1-minute load when the row ended (the box is shared).

    python bench/live.py [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import TESTDATA, table, write_json  # noqa: E402
from bench.pipeline import Client  # noqa: E402
from procmgr.__main__ import dev_user  # noqa: E402
from pyisdev.stack import Stack  # noqa: E402
from tests.support.detector import EigerSeries, write_frame  # noqa: E402

FRAMES = ["cbf/thau_3_2_0001.cbf", "cbf/thau_3_2_0002.cbf", "cbf/run2_1_00148.cbf"]
RATES = (10, 25, 100)
EIGER_RATE, EIGER_SHAPE = 10, (2162, 2068)  # an Eiger 4M frame
KEEP = 40  # the writer deletes older frames (100 Hz of 6 MB frames fills a disk)
XSIZE = 512
TARGETS = {"latency_ratio": 1.5, "p99_ratio": 3.0}


# -------------------------------------------------------------------------- the writer
def writer(folder: Path, kind: str, rate: float, count: int, log: Path) -> None:
    """Runs in its own process; writes ``log``: [[name, frame, monotonic done], ...]."""
    done: list[list] = []
    period = 1.0 / rate
    if kind == "eiger":
        series = EigerSeries(folder, "e", EIGER_SHAPE, nimages=count)
        rng = np.random.default_rng(16)
        pool = [rng.poisson(3, EIGER_SHAPE).astype(np.uint32) for _ in range(4)]
        log.with_suffix(".ready").touch()  # the follower may name the master now
        time.sleep(1.0)  # and starts on an empty series
        start = time.monotonic()
        for n in range(count):
            _until(start + n * period)
            frame = series.append(pool[n % len(pool)])
            done.append([series.master.name, frame, time.monotonic()])
    else:
        blobs = [(TESTDATA / rel).read_bytes() for rel in FRAMES]
        start = time.monotonic()
        for n in range(count):
            _until(start + n * period)
            name = f"live_{n + 1:05d}.cbf"
            write_frame(blobs[n % len(blobs)], folder / name, rename=n % 2 == 1)
            done.append([name, 1, time.monotonic()])
            if n >= KEEP:
                (folder / f"live_{n + 1 - KEEP:05d}.cbf").unlink(missing_ok=True)
    log.write_text(json.dumps(done))


def _until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# ------------------------------------------------------------------------ the follower
STEPS = ("read", "reduce", "map", "encode")  # the worker's render steps (timings_ms)


def follow(
    ask: Client, pid: str, fn: str, until: float, renders: list[float]
) -> list[tuple[str, int, float]]:
    """(file, frame, monotonic arrival) of every frame shown, until ``until``; ``renders``
    gets each shown frame's render time in the worker (its steps' sum, ms)."""
    shown, seq = [], 0
    while time.monotonic() < until:
        job = {"pid": pid, "type": "newest", "fn": fn, "seq": seq, "wait": 2, "xsize": XSIZE}
        reply = ask(job)
        now = time.monotonic()
        if reply[0] != b"":
            print(f"  follower: {reply[0][:200].decode(errors='replace')}", file=sys.stderr)
            continue
        echoed = json.loads(reply[1])
        newest = echoed["newest"]
        if newest is not None:
            seq = newest["seq"]
            shown.append((Path(newest["fn"]).name, newest["frame"], now))
            steps = echoed.get("timings_ms") or {}
            renders.append(sum(float(steps.get(step, 0.0)) for step in STEPS))
    return shown


def server_cpu_s(roots: list[int]) -> float:
    """utime + stime of ``roots`` and all their descendants (workers are the zygote's)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    total = 0
    for pid in ticks:
        p = pid
        while p > 1 and p not in roots:
            p = parents.get(p, 0)
        if p in roots:
            total += ticks[pid]
    return total / os.sysconf("SC_CLK_TCK")


def run_one(stack: Stack, data: Path, kind: str, rate: float, seconds: float) -> dict:
    folder = data / f"{kind}_{rate:g}hz"
    folder.mkdir()
    os.chmod(folder, 0o755)
    count = int(rate * seconds)
    log = folder.parent / f".{folder.name}.json"
    pid = stack.sign_session(dev_user(), [0])
    ask = Client(stack.endpoint)
    fn = f"{folder.name}/e_master.h5" if kind == "eiger" else folder.name
    if kind != "eiger":
        ask({"pid": pid, "type": "newest", "fn": fn, "wait": 0})  # the watch, before frame 1
    roots = [stack.proxy.proc.pid, stack.procmgr.proc.pid]
    cpu0, t0 = server_cpu_s(roots), time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--writer", str(folder), kind, str(rate), str(count), str(log)]
    )
    while kind == "eiger" and not log.with_suffix(".ready").exists() and proc.poll() is None:
        time.sleep(0.01)  # the writer is still making the series
    renders: list[float] = []
    shown = follow(ask, pid, fn, time.monotonic() + seconds + 3.0, renders)
    proc.wait()
    cpu = (server_cpu_s(roots) - cpu0) / (time.monotonic() - t0)
    written = json.loads(log.read_text())
    return summarise(written, shown, cold_ms(stack, ask, pid, folder, kind, written)) | {
        "what": f"{'Eiger 4M series' if kind == 'eiger' else 'Pilatus 6M CBF'} {rate:g} Hz",
        "key": f"{kind}_{rate:g}hz",
        "frames": count,
        "server_cpu": round(cpu, 3),
        # a frame answered from the kept rendering has no steps: the renders are the rest
        "render_p50_ms": round(statistics.median([r for r in renders if r > 0] or [0.0]), 1),
        "load_average": round(os.getloadavg()[0], 2),
    }


def cold_ms(stack: Stack, ask: Client, pid: str, folder: Path, kind: str, written) -> float:
    """The p50 of a jpeg of a fresh copy of frames of the same run (new inode: cold)."""
    times = []
    for i in range(6):
        if kind == "eiger":
            copy = folder / f"c{i}"
            copy.mkdir()
            os.chmod(copy, 0o755)
            for name in ("e_master.h5", "e_data_000001.h5"):
                (copy / name).write_bytes((folder / name).read_bytes())
                os.chmod(copy / name, 0o644)
            job = {"pid": pid, "type": "jpeg", "fn": f"{folder.name}/c{i}/e_master.h5"}
            job["frame"] = 1 + i
        else:
            src = TESTDATA / FRAMES[i % len(FRAMES)]
            write_frame(src, folder / f"cold_{i}.cbf")
            job = {"pid": pid, "type": "jpeg", "fn": f"{folder.name}/cold_{i}.cbf"}
        t0 = time.perf_counter()
        reply = ask(job | {"xsize": XSIZE})
        if reply[0] == b"":
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times[1:]) if len(times) > 1 else float("nan")


def summarise(written: list, shown: list, cold: float) -> dict:
    done = {(name, frame): t for name, frame, t in written}
    order = {(name, frame): k for k, (name, frame, _) in enumerate(written)}
    lat = sorted((t - done[(n, f)]) * 1000 for n, f, t in shown if (n, f) in done)
    behind, ages = [], []
    for k, (_, _, t_k) in enumerate(written[1:], start=1):
        on_screen = [(n, f) for n, f, t in shown if t <= t_k and (n, f) in order]
        if on_screen:
            idx = order[on_screen[-1]]
            behind.append((k - 1) - idx)
            ages.append((t_k - done[on_screen[-1]]) * 1000)
    p50 = statistics.median(lat) if lat else float("nan")
    p99 = float(np.percentile(lat, 99)) if lat else float("nan")
    return {
        "shown": round(len({(n, f) for n, f, _ in shown}) / max(len(written), 1), 3),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "cold_ms": round(cold, 2),
        "latency_ratio": round(p50 / cold, 3),
        "p99_ratio": round(p99 / cold, 3),
        "behind_max": max(behind, default=0),
        "age_p50_ms": round(statistics.median(ages), 1) if ages else None,
        "age_max_ms": round(max(ages), 1) if ages else None,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        folder, kind, rate, count, log = sys.argv[2:7]
        writer(Path(folder), kind, float(rate), int(count), Path(log))
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=4.0, help="of writing per rate")
    ap.add_argument(
        "--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where the frames are written (tmpfs: the disk's writeback is not measured)",
    )  # fmt: skip
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyis-live-", dir=args.dir) as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        os.chmod(tmp, 0o755)
        os.chmod(data, 0o755)
        stack = Stack(Path(tmp), ["--dev", str(data)]).start()
        try:
            rows = [run_one(stack, data, "cbf", rate, args.seconds) for rate in RATES]
            rows.append(run_one(stack, data, "eiger", EIGER_RATE, args.seconds))
        finally:
            stack.stop()
    columns = ["what", "frames", "shown", "p50_ms", "p99_ms", "cold_ms", "latency_ratio"]
    more = ["p99_ratio", "behind_max", "age_p50_ms", "render_p50_ms", "server_cpu", "load_average"]
    print(table(rows, [*columns, *more]))
    print("(a 2-core machine shared with other sessions' test runs: figures are noisy)")
    ratios = {r["key"]: r["latency_ratio"] for r in rows}
    payload = {"runs": rows, "latency_ratio": ratios, "targets": TARGETS, "host_shared": True}
    path = write_json("live", payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
