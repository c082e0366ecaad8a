"""bench/live.py's writer: real frames written the way detectors write them, at a rate, in a
process of its own (so its CPU is not the follower's), and when each one was complete.

Pilatus 6M CBFs (copies of the ones in ../shared/testdata): every other frame written then
closed, the rest written to a hidden temporary name and renamed into place; an Eiger 4M series
appended frame by frame to its data file. Its log: every frame and when its close/rename (or
append) was done, CLOCK_MONOTONIC, as the follower's arrival times.

    python bench/livewriter.py FOLDER cbf|eiger RATE COUNT LOG
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import TESTDATA  # noqa: E402
from tests.support.detector import EigerSeries, write_frame  # noqa: E402

FRAMES = ["cbf/thau_3_2_0001.cbf", "cbf/thau_3_2_0002.cbf", "cbf/run2_1_00148.cbf"]
EIGER_SHAPE = (2162, 2068)  # an Eiger 4M frame
KEEP = 40  # the writer deletes older frames (100 Hz of 6 MB frames fills a disk)
WARM_UP_FRAMES = 3 * KEEP  # the kept frames and the server's first renders (``warm_up``)


def writer(folder: Path, kind: str, rate: float, count: int, log: Path) -> None:
    """Runs in its own process; writes ``log``: {"frames": [[name, frame, monotonic done],
    ...], "cpu_s" and "wall_s": the writer's CPU and wall time while writing them, "late_s":
    how far behind its schedule a frame's write began at worst}."""
    done: list[list] = []
    late = 0.0
    period = 1.0 / rate
    if kind == "eiger":
        series = EigerSeries(folder, "e", EIGER_SHAPE, nimages=count)
        rng = np.random.default_rng(16)
        pool = [rng.poisson(3, EIGER_SHAPE).astype(np.uint32) for _ in range(4)]
        log.with_suffix(".ready").touch()  # the follower may name the master now
        time.sleep(1.0)  # and starts on an empty series
        start, cpu0 = time.monotonic(), time.process_time()
        for n in range(count):
            late = max(late, _until(start + n * period))
            frame = series.append(pool[n % len(pool)])
            done.append([series.master.name, frame, time.monotonic()])
    else:
        blobs = [(TESTDATA / rel).read_bytes() for rel in FRAMES]
        warm_up(folder.parent / f".{folder.name}.warm", blobs)
        start, cpu0 = time.monotonic(), time.process_time()
        for n in range(count):
            late = max(late, _until(start + n * period))
            name = f"live_{n + 1:05d}.cbf"
            write_frame(blobs[n % len(blobs)], folder / name, rename=n % 2 == 1)
            done.append([name, 1, time.monotonic()])
            if n >= KEEP:
                (folder / f"live_{n + 1 - KEEP:05d}.cbf").unlink(missing_ok=True)
    cpu_s, wall_s = time.process_time() - cpu0, time.monotonic() - start
    log.write_text(json.dumps({"frames": done, "cpu_s": cpu_s, "wall_s": wall_s, "late_s": late}))


def warm_up(scratch: Path, blobs: list[bytes]) -> None:
    """Write and delete as many frames as the writer keeps, outside the followed folder.

    The first time this host's memory backs a page (tmpfs or page cache), the hypervisor
    faults it in: ~12 us a page, ~19 ms a 6M frame where a write into memory used before
    takes ~2.3 ms. A detector's file server is warm; the first seconds of a fresh bench VM
    are not, and a writer 8x slower than its rate then bursts to catch up. The pages these
    frames free are the ones the run's frames get, shared with the server: its first renders
    take fresh buffers from the same free pages (a 6M frame decodes into 25 MB), so it writes
    WARM_UP_FRAMES, not KEEP (with KEEP the first 40 frames at 100 Hz took 16.5 ms each, and
    the writer then caught up at 330 Hz, 10 frames newer than any render could show)."""
    scratch.mkdir()
    for n in range(WARM_UP_FRAMES):
        write_frame(blobs[n % len(blobs)], scratch / f"warm_{n:05d}.cbf")
    for path in scratch.iterdir():
        path.unlink()
    scratch.rmdir()


def _until(t: float) -> float:
    """Sleep until ``t``; how late it already was (0.0 when on time)."""
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return max(0.0, -delay)


if __name__ == "__main__":
    folder, kind, rate, count, log = sys.argv[1:6]
    writer(Path(folder), kind, float(rate), int(count), Path(log))
