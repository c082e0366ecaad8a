"""The image pipeline, per stage and end to end through the real stack, against baselines
measured in the same run.

1. Per stage, in process (bench/stages.py): read, reduce, map, encode (simplejpeg and Pillow),
   each as a ratio to ``np.copy`` of the frame; the dominant stage is named.
2. End to end: the floor is the worker's own job function (read, reduce, map, encode) called
   in this process with no server; the end-to-end figure is a REQ request through is-proxy,
   is-procmgr and a privilege-dropped worker for the same job: cold (a stage-1 key never seen),
   an exact repeat, and a new contrast (stage 2 only).
3. A new session (the procmgr's own measure of zygote fork + privilege drop + worker ready), a
   bare round trip through the stack (a ``status`` request) and warm throughput from 4 clients.

The C server's figures (ORIGINAL.md, "How fast") are printed beside ours for orientation only.
Prints tables; writes bench/results/pipeline.json.

    python bench/pipeline.py [--repeat 15] [--synth /tmp/perf-images]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stages  # noqa: E402
from bench.common import data_dir, median_ms, synth_images, table, write_json  # noqa: E402
from procmgr.__main__ import dev_user  # noqa: E402
from pyisdev.stack import Stack  # noqa: E402
from tests.support.client import ask as ask_once  # noqa: E402
from worker import jobs  # noqa: E402

IMAGES = [
    ("Pilatus 6M CBF (synth)", "pilatus6m_2463x2527.cbf"),
    ("4k MarCCD (synth)", "marccd_4096.mccd"),
    ("Eiger 16M frame (synth)", "eiger_master.h5"),
    ("Pilatus 6M CBF (real)", "thau_3_2_0001.cbf"),
    ("Eiger 16M as CBF (real)", "dlsnxs2cbf_therm_0001.cbf"),
]
# the C server, cold, 512 px, medians on a machine like this one (orientation only)
C_COLD_MS = {"pilatus6m_2463x2527.cbf": 81.0, "marccd_4096.mccd": 94.0, "eiger_master.h5": 406.0}
C_WARM_MS = (2.5, 5.0)
STAGE_NAMES = {  # bench/stages.py's stage names, shortened for the table
    "copy": "copy (baseline)",
    "read": "read + decode",
    "reduce": "reduce (512 px)",
    "map": "map (levels + pixels)",
    "simplejpeg": "encode simplejpeg",
    "pillow": "encode pillow",
}
REAL = ["cbf/thau_3_2_0001.cbf", "cbf/dlsnxs2cbf_therm_0001.cbf"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--synth", type=Path, default=Path("/tmp/perf-images"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyis-bench-") as tmp:
        data = data_dir(Path(tmp), synth_images(args.synth), REAL)
        stack = Stack(Path(tmp), ["--dev", str(data)]).start()
        try:
            rows, extra = run(stack, data, args.repeat)
        finally:
            stack.stop()
        stage_rows = stage_breakdown(data, args.repeat)
    cols = [
        "image",
        "c_cold_ms",
        "vs_c",
        "floor_cold_ms",
        "e2e_cold_ms",
        "cold_ratio",
        "e2e_repeat_ms",
        "floor_contrast_ms",
        "e2e_contrast_ms",
        "contrast_ratio",
        "note",
    ]
    print(table(rows, cols))
    for k, v in extra.items():
        print(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}")
    print(
        table(
            stage_rows,
            [
                "image",
                "read",
                "reduce",
                "map",
                "simplejpeg",
                "pillow",
                "copy",
                "reduce_x_copy",
                "dominant",
            ],
        )
    )
    print("written", write_json("pipeline", {"rows": rows, "stages": stage_rows, **extra}))
    return 0


class Client:
    """One REQ socket kept open, as the node.js front-end keeps its socket."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, 30000)
        self.sock.connect(endpoint)

    def __call__(self, job: dict) -> list[bytes]:
        self.sock.send(json.dumps(job).encode())
        return self.sock.recv_multipart()


def run(stack: Stack, data: Path, repeat: int) -> tuple[list[dict], dict]:
    pid = stack.sign_session(dev_user(), [0])
    ask = Client(stack.endpoint)
    rows = []
    for label, name in IMAGES:
        try:
            rows.append(measure(ask, pid, data, label, name, repeat))
        except RuntimeError as exc:
            rows.append({"image": label, "note": str(exc)[:70]})
    status = {"pid": "bench", "type": "status"}
    rtt = median_ms(lambda: ask(status), repeat * 10)
    rtt_new_socket = median_ms(lambda: ask_once(stack.endpoint, status), repeat * 10)
    for esaf in range(1, 11):  # ten new sessions: ten workers forked and dropped
        job = {"pid": stack.sign_session(dev_user(), [esaf]), "esaf": esaf, "type": "status"}
        ask(job | {"type": "meta", "fn": "pilatus6m_2463x2527.cbf"})
    starts = json.loads(ask(status)[2])["worker_start_ms"]
    rps = throughput(stack.endpoint, pid)
    return rows, {
        "warm_requests_per_s_4_clients": rps,
        "c_server_warm_requests_per_s": 640.0,
        "status_round_trip_ms": rtt,
        "status_round_trip_new_socket_ms": rtt_new_socket,
        "new_session_ms_median": statistics.median(starts),
        "new_session_ms_all": starts,
    }


def stage_breakdown(data: Path, repeat: int) -> list[dict]:
    """Median ms per stage (bench/stages.py) and the stage that dominates a cold request."""
    out = []
    for label, name in IMAGES:
        try:
            image = stages.bench_image(str(data / name), repeat, 512, 90)
        except Exception as exc:  # a format not read yet
            out.append({"image": label, "dominant": f"not read: {str(exc)[:40]}"})
            continue
        median = {k: v["median_ms"] for k, v in image["stages"].items()}
        ms = {short: median[long] for short, long in STAGE_NAMES.items()}
        work = {k: ms[k] for k in ("read", "reduce", "map", "simplejpeg")}
        out.append(
            {
                "image": label,
                **ms,
                "reduce_x_copy": ms["reduce"] / ms["copy"],
                "dominant": max(work, key=work.get),
            }
        )
    return out


def throughput(endpoint: str, pid: str, clients: int = 4, per_client: int = 400) -> float:
    """Warm requests per second from ``clients`` REQ sockets (bounded: clients x per_client)."""
    job = {"pid": pid, "type": "jpeg", "fn": "thau_3_2_0001.cbf", "xsize": 512}
    Client(endpoint)(job)  # warm

    def run() -> None:
        client = Client(endpoint)
        for i in range(per_client):
            client(job | {"contrast": 100 + i % 2})  # alternate two cached JPEGs

    threads = [threading.Thread(target=run) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * per_client / (time.perf_counter() - t0)


def measure(ask: Client, pid: str, data: Path, label: str, name: str, repeat: int) -> dict:
    """Cold (a stage-1 key never seen: xsize 512+i), an exact repeat, and new contrast (same
    stage-1 key, a new black level each time: stage 2 only), through the stack and in process."""
    sizes = [512 + i for i in range(repeat)]
    cold_floor = jobs.Pipeline(home=str(data), cache_bytes=0)  # never hits
    warm_floor = jobs.Pipeline(home=str(data))
    job = {"type": "jpeg", "fn": name, "xsize": 512}
    try:
        warm_floor.run(job)
    except Exception as exc:  # a format the worker does not read yet
        raise RuntimeError(f"not served: {exc}") from None
    it = iter(sizes)
    f_cold = median_ms(lambda: cold_floor.run(job | {"xsize": next(it)}), repeat, warmup=0)
    f_levels = iter(range(100, 100 + repeat + 1))
    f_contrast = median_ms(lambda: warm_floor.run(job | {"contrast": next(f_levels)}), repeat)
    first = ask({"pid": pid, **job, "xsize": 400})
    if first[0] != b"":
        raise RuntimeError(first[0].decode())
    it = iter(sizes)
    e_cold = median_ms(lambda: ask({"pid": pid, **job, "xsize": next(it)}), repeat, 0)
    e_warm = median_ms(lambda: ask({"pid": pid, **job}), repeat)
    levels = iter(range(100, 100 + repeat + 1))
    e_contrast = median_ms(lambda: ask({"pid": pid, **job, "contrast": next(levels)}), repeat)
    c_cold = C_COLD_MS.get(name)
    return {
        "image": label,
        "c_cold_ms": c_cold,
        "vs_c": e_cold / c_cold if c_cold else None,
        "floor_cold_ms": f_cold,
        "e2e_cold_ms": e_cold,
        "cold_ratio": e_cold / f_cold,
        "e2e_repeat_ms": e_warm,
        "floor_contrast_ms": f_contrast,
        "e2e_contrast_ms": e_contrast,
        "contrast_ratio": e_contrast / f_contrast,
    }


if __name__ == "__main__":
    sys.exit(main())
