"""The interactive path: what a viewer that drags a contrast slider, resizes, zooms and opens
sessions costs, each as a ratio to a baseline measured in the same run (issue 14).

Per image (a Pilatus 6M CBF, a 4k MarCCD, an Eiger 16M bitshuffle/LZ4 frame, synthesized by
/work/shared/tools/make_images.py), in rounds so that load on this shared machine hits every
figure alike; each ratio is the median of the per-round ratios:

- ``contrast_ratio``: a new contrast end to end / (the in-process stage-2 floor + a bare two-hop
  ZeroMQ round trip, bench/hops.py, with reply frames of the same sizes), each the median of
  CONTRASTS new contrasts per round (one alone met whatever the zoom before it left running).
  Target <= 1.3.
- ``xsize_ratio``, ``zoom_ratio``: a new xsize, a new zoom segment / a cold image of the same
  frame in the same worker (the file is touched, so its identity and every cache key change).
  Target <= 0.25.
- ``fresh_cold_ratio``: the first image of a new session (zygote fork, privilege drop, cold
  read) / the in-process floor in a fresh process. Target <= 1.3.
- ``warm_cold_ratio``: a cold image in a warm worker / the in-process floor in a warm process.
  Target <= 1.1.
- ``session_ratio`` (once): a new session (fork + privilege drop + a tiny meta reply) / (a bare
  fork of a process that imported what the zygote imports + a bare two-hop round trip), each
  after the same idle gap. Target <= 1.5. Each makes its ESAF's cache user; for the record,
  ``session_ratio_known_esaf``: new workers of ESAFs whose cache users exist (the usual case).

For the record, ``next_frame_ms``: the next frame of a series (a file this worker has not
read, NEXT_FRAMES of them, each NEXT_FRAME_GAP_S after the last, as a user steps through
frames; for the Eiger, the next frame of its data file) in the same warm worker, and
``next_frame_ratio`` = that / the cold image above: 1 when a new frame's pyramid costs no more
than a new version's (whose memory the worker reuses).

Then warm throughput with 1, 4 and 8 clients and the per-hop breakdown of a new contrast (from
the reply's ``timings_ms``). Prints tables; writes bench/results/interactive.json.

    python bench/interactive.py [--rounds 9] [--synth DIR] [--session-memo-s S]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hops  # noqa: E402
from bench.common import data_dir, median_ms, synth_images, table, write_json  # noqa: E402
from bench.pipeline import Client, throughput  # noqa: E402
from procmgr import spares  # noqa: E402
from procmgr.__main__ import dev_user  # noqa: E402
from pyis_common.config import ProcmgrConfig  # noqa: E402
from pyisdev.stack import Stack  # noqa: E402
from worker import jobs, warmup  # noqa: E402

IMAGES = [
    ("Pilatus 6M CBF", "pilatus6m_2463x2527.cbf"),
    ("4k MarCCD", "marccd_4096.mccd"),
    ("Eiger 16M bslz4", "eiger_master.h5"),
]
TARGETS = {
    "contrast_ratio": 1.3,
    "xsize_ratio": 0.25,
    "zoom_ratio": 0.25,
    "fresh_cold_ratio": 1.3,
    "warm_cold_ratio": 1.1,
    "session_ratio": 1.5,
}
# between new sessions: people open them seconds apart, not 100 a second; above the spare's
# refill (REFILL_DELAY_S + fork + rehearsal: 160-300 ms measured here), which 0.2 s was not
SESSION_GAP_S = 0.5
HOPS = ("e2e", "total", "access", "queue", "worker", "map", "encode")
CONTRASTS = 7  # new contrasts per round (a drag of the slider), against as many floors
NEXT_FRAMES = 12  # new files stepped through, per image in NEXT_FRAME_IMAGES
NEXT_FRAME_GAP_S = 0.3  # a user's step to the next frame, not a burst
NEXT_FRAME_KEYS = ("next_frame_ms", "next_frame_max_ms", "next_frame_ratio")
NEXT_FRAME_IMAGES = ("pilatus6m_2463x2527.cbf", "marccd_4096.mccd")  # 6 and 32 MB a copy
EIGER_FRAMES = 4  # the synthetic Eiger 16M's frames, stepped through in turn
COLD_STEPS = ("e2e", "total", "access", "queue", "worker", "read", "reduce", "map", "encode")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--synth", type=Path, default=None, help="reuse synthesized images here")
    ap.add_argument(
        "--session-memo-s", type=float, default=None, help="procmgr session_memo_s (default: its)"
    )
    args = ap.parse_args()
    warmup.tune_malloc()  # the in-process floors run the workers' code, malloc tuning included
    with tempfile.TemporaryDirectory(prefix="pyis-interactive-") as tmp:
        synth = synth_images(args.synth or Path(tmp) / "synth")
        data = data_dir(Path(tmp), synth, ["cbf/thau_3_2_0001.cbf"])  # throughput uses thau
        for _, name in IMAGES:  # the page cache and byte-compiled modules, not timed
            hops.run("floor", str(data), json.dumps({"type": "jpeg", "fn": name}))
        make_tiny(data / "tiny.cbf")
        logs = Path(tmp) / "logs"
        logs.mkdir()
        config = Path(tmp) / "procmgr.toml"
        memo = args.session_memo_s
        config.write_text("[procmgr]\n" + ("" if memo is None else f"session_memo_s = {memo}\n"))
        argv = ["--dev", str(data), "--config", str(config)]
        stack = Stack(Path(tmp), argv, stderr_dir=logs).start()
        try:
            result = bench(stack, data, args.rounds, config)
        finally:
            stack.stop()
    result["session_memo_s"] = (
        args.session_memo_s if args.session_memo_s is not None else ProcmgrConfig().session_memo_s
    )
    report(result)
    print("written", write_json("interactive", result))
    return 0


def make_tiny(path: Path) -> None:
    import fabio.cbfimage
    import numpy as np

    fabio.cbfimage.CbfImage(data=np.zeros((48, 64), np.int32), header={}).write(str(path))
    os.chmod(path, 0o644)


def touch(path: Path) -> None:
    """A new identity (mtime), so every stage-1 key of this file is new: a real cold read."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, max(time.time_ns(), st.st_mtime_ns + 1000)))


def timed(ask: Client, job: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    reply = ask(job)
    ms = (time.perf_counter() - t0) * 1000
    if reply[0] != b"":
        raise RuntimeError(reply[0].decode()[:200])
    return ms, json.loads(reply[1]).get("timings_ms", {})


def bench(stack: Stack, data: Path, rounds: int, config: Path) -> dict:
    pid = stack.sign_session(dev_user(), [0])
    ask = Client(stack.endpoint)
    baseline = hops.Baseline()
    try:
        bare = lambda: Client(baseline.endpoint)  # noqa: E731
        rtt_client = bare()
        images = {}
        for n, (label, name) in enumerate(IMAGES):
            esafs = 1000 + 100 * n  # new sessions of this image: ESAFs nobody used yet
            images[name] = image_rounds(stack, ask, pid, data, name, rounds, rtt_client, esafs)
            images[name]["image"] = label
            if name in NEXT_FRAME_IMAGES:
                images[name] |= next_frames(ask, pid, data, name, images[name]["cold_ms"])
            elif name.endswith("_master.h5"):
                images[name] |= next_eiger_frames(ask, pid, data, name, images[name]["cold_ms"])
        session = new_sessions(stack, ask, rounds, rtt_client)
        status_ms = median_ms(lambda: ask({"pid": "x", "type": "status"}), 50)
        bare_ms = median_ms(lambda: rtt_client([0]), 50)
    finally:
        baseline.stop()
    rps = {str(n): throughput(stack.endpoint, pid, clients=n, per_client=200) for n in (1, 4, 8)}
    known = known_esaf_sessions(stack, ask, rounds, config)  # last: it retires every worker
    session |= {"known_esaf_session_ms": known}
    session["session_ratio_known_esaf"] = known / session["baseline_ms"]
    out: dict = {"images": images, "session": session, "requests_per_s": rps}
    out["status_round_trip_ms"], out["bare_two_hop_ms"] = status_ms, bare_ms
    for key in TARGETS:  # the worst image names the figure
        values = [i[key] for i in images.values() if key in i] or [session.get(key)]
        out[key] = max(v for v in values if v is not None)
    out["targets"] = TARGETS
    out["machine"] = "2 cores shared with ~7 other helpers' tests and benches (noisy)"
    return out


def image_rounds(
    stack: Stack,
    ask: Client,
    pid: str,
    data: Path,
    name: str,
    rounds: int,
    rtt: Client,
    esafs: int,
) -> dict:
    path = data / name
    job = {"pid": pid, "type": "jpeg", "fn": name, "xsize": 512}
    floor = jobs.Pipeline(home=str(data), cache_bytes=0)  # never holds anything: cold each time
    warm_floor = jobs.Pipeline(home=str(data))
    warm_floor.run(job)
    sample = ask(job)  # this worker has read this format once
    sizes = [len(f) for f in sample[1:]]  # the bare round trip carries frames of these sizes
    keys = ("cold", "xsize", "zoom", "contrast", "floor", "stage2", "rtt", "fresh", "floor_fresh")
    ms: dict[str, list[float]] = {k: [] for k in keys}
    hop: dict[str, list[float]] = {k: [] for k in HOPS}
    cold: dict[str, list[float]] = {k: [] for k in COLD_STEPS}
    resized: dict[str, list[float]] = {k: [] for k in COLD_STEPS}
    for r in range(rounds):
        touch(path)  # a new version of the file: both below read it (and an Eiger its mask)
        t0 = time.perf_counter()
        floor.run(job)
        ms["floor"].append((time.perf_counter() - t0) * 1000)
        e2e, timings = timed(ask, job)
        ms["cold"].append(e2e)
        for k in COLD_STEPS:
            cold[k].append(e2e if k == "e2e" else float(timings.get(k, 0.0)))
        e2e, timings = timed(ask, job | {"xsize": 600 + r})
        ms["xsize"].append(e2e)
        for k in COLD_STEPS:
            resized[k].append(e2e if k == "e2e" else float(timings.get(k, 0.0)))
        zoom = {"zoom": 4.0, "segcol": float(r % 4), "segrow": float(r // 4 % 4)}
        ms["zoom"].append(timed(ask, job | zoom)[0])
        warm_floor.run(job)  # the touched file's stage 1, so the floor below is stage 2 only
        drag: dict[str, list[float]] = {"stage2": [], "rtt": [], "contrast": []}
        for c in range(CONTRASTS):  # a slider drag: each a new contrast; the round's median
            contrast = {"contrast": 100 + r * CONTRASTS + c}
            t0 = time.perf_counter()
            warm_floor.run(job | contrast)
            drag["stage2"].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            rtt(sizes)
            drag["rtt"].append((time.perf_counter() - t0) * 1000)
            e2e, timings = timed(ask, job | contrast)
            drag["contrast"].append(e2e)
            for k in HOPS:
                hop[k].append(e2e if k == "e2e" else float(timings.get(k, 0.0)))
        for k, v in drag.items():
            ms[k].append(statistics.median(v))
    for r in range(max(3, rounds // 2)):  # a new session: a new ESAF, a new worker
        esaf = esafs + r
        session = stack.sign_session(dev_user(), [esaf])
        ms["fresh"].append(timed(ask, job | {"pid": session, "esaf": esaf})[0])
        ms["floor_fresh"].append(float(hops.run("floor", str(data), json.dumps(job))))
    med = {f"{k}_ms": statistics.median(v) for k, v in ms.items()}
    per_round = lambda a, b: statistics.median(x / y for x, y in zip(a, b, strict=False))  # noqa: E731
    floor_contrast = [s + t for s, t in zip(ms["stage2"], ms["rtt"], strict=True)]
    return med | {
        "contrast_ratio": per_round(ms["contrast"], floor_contrast),
        "xsize_ratio": per_round(ms["xsize"], ms["cold"]),
        "zoom_ratio": per_round(ms["zoom"], ms["cold"]),
        "warm_cold_ratio": per_round(ms["cold"], ms["floor"]),
        "fresh_cold_ratio": med["fresh_ms"] / med["floor_fresh_ms"],
        "hops_ms": {k: statistics.median(v) for k, v in hop.items()},
        "cold_steps_ms": {k: statistics.median(v) for k, v in cold.items()},
        "xsize_steps_ms": {k: statistics.median(v) for k, v in resized.items()},
    }


def next_frames(ask: Client, pid: str, data: Path, name: str, cold_ms: float) -> dict:
    """A user stepping through a series: NEXT_FRAMES copies of ``name`` this worker never
    read, each NEXT_FRAME_GAP_S after the last reply (the gap is the behaviour measured, a
    user's pace, not a wait for readiness)."""
    series = data / "series"
    series.mkdir(mode=0o755, exist_ok=True)
    stem, ext = os.path.splitext(name)
    names = [f"series/{stem}_{i:04d}{ext}" for i in range(NEXT_FRAMES)]
    for rel in names:
        shutil.copy(data / name, data / rel)
        os.chmod(data / rel, 0o644)
    ms = []
    for rel in names:
        time.sleep(NEXT_FRAME_GAP_S)
        ms.append(timed(ask, {"pid": pid, "type": "jpeg", "fn": rel, "xsize": 512})[0])
        os.remove(data / rel)  # its copy is not needed again; the worker holds its pyramid
    return _next_frame_figures(ms, cold_ms)


def next_eiger_frames(ask: Client, pid: str, data: Path, name: str, cold_ms: float) -> dict:
    """An Eiger user stepping through the frames of a series: frame 1, 2, 3, 4 of a new
    version of the master (touched before each pass), NEXT_FRAMES in all, NEXT_FRAME_GAP_S
    apart; each a frame this worker does not hold."""
    ms = []
    for i in range(NEXT_FRAMES):
        if i % EIGER_FRAMES == 0:
            touch(data / name)
        time.sleep(NEXT_FRAME_GAP_S)
        job = {"pid": pid, "type": "jpeg", "fn": name, "frame": 1 + i % EIGER_FRAMES}
        ms.append(timed(ask, job | {"xsize": 512})[0])
    return _next_frame_figures(ms, cold_ms)


def _next_frame_figures(ms: list[float], cold_ms: float) -> dict:
    """The NEXT_FRAME_KEYS of the times ``ms``."""
    median = statistics.median(ms)
    return dict(zip(NEXT_FRAME_KEYS, (median, max(ms), median / cold_ms), strict=True))


def new_sessions(stack: Stack, ask: Client, rounds: int, rtt: Client) -> dict:
    """A new session with nothing to read (a tiny meta) against a bare fork + round trip.
    Sessions open SESSION_GAP_S apart, as users open them (the zygote refills its spare in
    between); each baseline is measured after the same idle gap, since on this VM the first
    round trip after idling pays the wake-up of halted vCPUs (a bare two-hop 0.65-0.82 ms
    against 0.26-0.36 back to back in this bench's runs); the back-to-back baselines are kept
    for the record. Then as many
    sessions back to back (``burst_session_ms``: past the spares, a session forks)."""
    forks = json.loads(hops.run("fork", str(rounds * 2), str(SESSION_GAP_S)))
    forks_awake = json.loads(hops.run("fork", str(rounds * 2)))
    session_ms, rtts, awake, parts = [], [], [], []
    for r in range(rounds * 2):
        time.sleep(SESSION_GAP_S)
        ms, timings = timed(ask, _meta(stack, 5000 + r))
        session_ms.append(ms)
        parts.append(timings)
        time.sleep(SESSION_GAP_S)
        for kept in (rtts, awake):  # after the gap, then at once
            t0 = time.perf_counter()
            rtt([0, 0])
            kept.append((time.perf_counter() - t0) * 1000)
    starts = json.loads(ask({"pid": "x", "type": "status"})[2])["worker_start_ms"]
    burst = [timed(ask, _meta(stack, 6000 + r))[0] for r in range(rounds)]
    base = statistics.median(forks) + statistics.median(rtts)
    awake_base = statistics.median(forks_awake) + statistics.median(awake)
    return {
        "burst_session_ms": statistics.median(burst),
        "new_session_ms": statistics.median(session_ms),
        "bare_fork_ms": statistics.median(forks),
        "bare_fork_awake_ms": statistics.median(forks_awake),
        "bare_two_hop_ms": statistics.median(rtts),
        "bare_two_hop_awake_ms": statistics.median(awake),
        "worker_start_ms": statistics.median(starts),
        "baseline_ms": base,
        "session_ratio": statistics.median(session_ms) / base,
        # the ratio as measured before (baselines back to back), for the record
        "session_ratio_awake_baselines": statistics.median(session_ms) / awake_base,
        "hops_ms": {k: statistics.median(float(p.get(k, 0)) for p in parts) for k in HOPS[1:]},
    }


def known_esaf_sessions(stack: Stack, ask: Client, rounds: int, config: Path) -> float:
    """The median new session of an ESAF whose cache user exists (new_sessions made them): the
    usual one, a second user of an experiment or one back after the idle timeout; the row
    above makes a cache user each time. Dev mode has one user, so a new worker needs a new
    (user, ESAF): every worker is retired first (``worker_idle_s`` 1 s, by SIGHUP, then the
    old value again) and has exited before the first session (none exits meanwhile)."""
    kept = config.read_text()
    config.write_text(kept + "worker_idle_s = 1.0\n")
    stack.procmgr.signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while json.loads(ask({"pid": "x", "type": "status"})[2])["workers"] or _workers_alive(stack):
        if time.monotonic() > deadline:
            raise RuntimeError("the workers were not retired within 60 s")
        time.sleep(0.2)  # the idle timeout's and the exits' turn
    config.write_text(kept)
    stack.procmgr.signal(signal.SIGHUP)
    ask({"pid": "x", "type": "status"})  # a loop turn: the signal is handled before requests
    ms = []
    for r in range(rounds * 2):
        time.sleep(SESSION_GAP_S)
        ms.append(timed(ask, _meta(stack, 5000 + r))[0])
    return statistics.median(ms)


def _children(parents: set[int]) -> dict[int, str]:
    """{pid: comm} of the processes whose parent is one of ``parents``."""
    out = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue  # not a process, or gone meanwhile
        head, _, rest = stat.rpartition(") ")  # "pid (comm) state ppid ..."
        if int(rest.split()[1]) in parents:
            out[int(entry.name)] = head.partition(" (")[2]
    return out


def _workers_alive(stack: Stack) -> int:
    """The zygote's children that are not its waiting spare: workers, or workers exiting."""
    zygote = _children({stack.procmgr.proc.pid})
    spare = spares.NAME.decode()
    return sum(comm != spare for comm in _children(set(zygote)).values())


def _meta(stack: Stack, esaf: int) -> dict:
    pid = stack.sign_session(dev_user(), [esaf])
    return {"pid": pid, "esaf": esaf, "type": "meta", "fn": "tiny.cbf"}


def report(result: dict) -> None:
    rows = []
    for key, target in TARGETS.items():
        row = {"ratio": key, "target": target, "worst": result[key]}
        for name, image in result["images"].items():
            row[name.split("_")[0]] = image.get(key)
        row["pass"] = "yes" if result[key] <= target else "NO"
        rows.append(row)
    names = [n.split("_")[0] for n in result["images"]]
    print(table(rows, ["ratio", *names, "worst", "target", "pass"]))
    ms_keys = ["cold_ms", "xsize_ms", "zoom_ms", "contrast_ms", "floor_ms", "stage2_ms", "rtt_ms"]
    ms_rows = [{"image": i["image"]} | {k: i[k] for k in [*ms_keys, "fresh_ms", "floor_fresh_ms"]}
               for i in result["images"].values()]  # fmt: skip
    print(table(ms_rows, ["image", *ms_keys, "fresh_ms", "floor_fresh_ms"]))
    hop_rows = [{"image": i["image"]} | i["hops_ms"] for i in result["images"].values()]
    print("new contrast, per hop (ms; e2e = client, total = procmgr, worker = worker thread):")
    print(table(hop_rows, ["image", *HOPS]))
    cold_rows = [{"image": i["image"]} | i["cold_steps_ms"] for i in result["images"].values()]
    print("cold image in a warm worker, per step (ms):")
    print(table(cold_rows, ["image", *COLD_STEPS]))
    xsize_rows = [{"image": i["image"]} | i["xsize_steps_ms"] for i in result["images"].values()]
    print("new xsize (from the held pyramid), per step (ms):")
    print(table(xsize_rows, ["image", *COLD_STEPS]))
    frames = [{"image": i["image"]} | {k: i[k] for k in NEXT_FRAME_KEYS}
              for i in result["images"].values() if "next_frame_ms" in i]  # fmt: skip
    print(f"next frame of a series (new files, {NEXT_FRAME_GAP_S} s apart; ratio to cold):")
    print(table(frames, ["image", *NEXT_FRAME_KEYS]))
    print("new session:", json.dumps(result["session"]))
    print("warm requests/s by clients:", json.dumps(result["requests_per_s"]))
    print(f"status through proxy+procmgr {result['status_round_trip_ms']:.3f} ms, "
          f"bare two-hop {result['bare_two_hop_ms']:.3f} ms")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
