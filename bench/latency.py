"""End-to-end latency through the real stack, as ratios to the in-process floor.

For each image: the floor is the worker's own job function (read, reduce, map, encode) called
in this process with no server; the end-to-end figure is a REQ request through is-proxy,
is-procmgr and a privilege-dropped worker for the same job. Also: a new session (the procmgr's
own measure of zygote fork + privilege drop + worker ready) and a bare ZeroMQ round trip through
the stack (a ``status`` request), both in ms. Prints a table; writes bench/results/latency.json.

    python bench/latency.py [--repeat 15] [--synth /tmp/perf-images]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import data_dir, median_ms, synth_images, table, write_json  # noqa: E402
from procmgr.__main__ import dev_user  # noqa: E402
from pyis_common.devstack import Stack  # noqa: E402
from tests.support.client import ask as ask_once  # noqa: E402
from worker import jobs  # noqa: E402

IMAGES = [
    ("Pilatus 6M CBF (synth)", "pilatus6m_2463x2527.cbf"),
    ("4k MarCCD (synth)", "marccd_4096.mccd"),
    ("Eiger 16M frame (synth)", "eiger_master.h5"),
    ("Pilatus 6M CBF (real)", "thau_3_2_0001.cbf"),
    ("Eiger 16M as CBF (real)", "dlsnxs2cbf_therm_0001.cbf"),
]
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
    cols = [
        "image",
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
    print("written", write_json("latency", {"rows": rows, **extra}))
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
    return rows, {
        "status_round_trip_ms": rtt,
        "status_round_trip_new_socket_ms": rtt_new_socket,
        "new_session_ms_median": statistics.median(starts),
        "new_session_ms_all": starts,
    }


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
    return {
        "image": label,
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
