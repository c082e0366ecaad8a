"""A bounded load of Lazy Pirate clients (the zguide's client-side reliability), run as a
program inside a test's web-host namespace; prints one JSON summary.

Each client sends one request at a time on a DEALER socket (``[""][JSON]``, as a REQ would),
so that a second reply to a request, which a REQ socket would hide, is seen and counted. A
request is retried on a retryable ``busy:`` reply or on silence (then on a fresh socket, as
the Lazy Pirate does), at most ``MAX_TRIES`` times; its reply must echo its own ``tag`` and
carry a JPEG. With ``--until`` the clients stop at that moment (CLOCK_MONOTONIC, the same in
every process), and ``window_ok`` counts the requests answered ok within ``--window``, so a
benchmark can measure a steady state without the ramp-up or the tail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import zmq

MAX_TRIES = 3
TIMEOUT_MS = 10000  # well past the proxy's HOST_DEAD_AFTER_S: silence is a failure here
DRAIN_MS = 1000  # after the last request, a late second reply would come within this


class Tally:
    def __init__(self, progress: Path, window: tuple[float, float]) -> None:
        self.lock = threading.Lock()
        self.progress = progress
        self.window = window
        self.counts = {"requests": 0, "ok": 0, "wrong": 0, "lost": 0, "duplicates": 0}
        self.counts["window_ok"] = 0
        self.counts |= {"silent_tries": 0, "busy_replies": 0, "retried": 0, "max_retries": 0}
        self.busy_latency_max_s = 0.0
        self.errors: list[str] = []

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n
            if key == "ok" and self.window[0] <= time.monotonic() <= self.window[1]:
                self.counts["window_ok"] += n

    def finished(self, retries: int) -> None:
        with self.lock:
            self.counts["requests"] += 1
            self.counts["retried"] += retries > 0
            self.counts["max_retries"] = max(self.counts["max_retries"], retries)
            done = self.counts["requests"]
        if done % 50 == 0:
            tmp = self.progress.with_suffix(".tmp")
            tmp.write_text(str(done))
            os.replace(tmp, self.progress)

    def busy(self, latency_s: float) -> None:
        with self.lock:
            self.counts["busy_replies"] += 1
            self.busy_latency_max_s = max(self.busy_latency_max_s, latency_s)


def command(
    inside: list[str],
    endpoint: str,
    jobs: list[dict],
    jobs_file: Path,
    progress_file: Path,
    *extra: str,
) -> list[str]:
    """The argv of this load run under ``inside`` (e.g. the web host's namespace), its base jobs
    written to ``jobs_file``: the netns test and bench/scale.py start it the same way."""
    jobs_file.write_text(json.dumps(jobs))
    return [
        *inside,
        sys.executable,
        "-m",
        "tests.support.pirate_load",
        "--endpoint",
        endpoint,
        "--jobs",
        str(jobs_file),
        "--progress",
        str(progress_file),
        *extra,
    ]


def connect(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def check(frames: list[bytes], tag: str, seen: set[str], tally: Tally) -> str:
    """'ok', 'busy', or 'wrong' for one reply to the request ``tag``."""
    if len(frames) == 2 and frames[0] == b"" and frames[1].startswith(b"busy:"):
        return "busy"
    if len(frames) == 5 and frames[:2] == [b"", b""]:  # delimiter, then the C server's reply
        got = json.loads(frames[2]).get("tag")
        if got == tag and frames[4][:2] == b"\xff\xd8":
            return "ok"
        if got in seen:
            tally.add("duplicates")
    tally.errors.append(repr([f[:80] for f in frames])[:300])
    return "wrong"


def one_request(ctx, sock, endpoint: str, job: dict, tally: Tally, seen: set[str]):
    body = json.dumps(job).encode()
    for attempt in range(MAX_TRIES):
        t0 = time.monotonic()
        sock.send_multipart([b"", body])
        if not sock.poll(TIMEOUT_MS):
            tally.add("silent_tries")
            sock.close(0)
            sock = connect(ctx, endpoint)
            continue
        outcome = check(sock.recv_multipart(), job["tag"], seen, tally)
        if outcome == "busy":
            tally.busy(time.monotonic() - t0)
            continue
        tally.add(outcome)
        tally.finished(attempt)
        return sock
    tally.add("lost")
    tally.finished(MAX_TRIES)
    return sock


def client(
    endpoint: str, base: dict, n: int, number: int, tally: Tally, drain_ms: int, until: float
) -> None:
    ctx = zmq.Context.instance()
    sock = connect(ctx, endpoint)
    seen: set[str] = set()
    for i in range(n):
        if time.monotonic() >= until:
            break
        tag = f"{number}:{i}"
        job = base | {"tag": tag, "xsize": 64 + 8 * (i % 4)}
        sock = one_request(ctx, sock, endpoint, job, tally, seen)
        seen.add(tag)
    while sock.poll(drain_ms):  # nothing more may come: each request had its one reply
        sock.recv_multipart()
        tally.add("duplicates")
    sock.close(0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--jobs", required=True, help="JSON list: one base job per client")
    ap.add_argument("--requests", type=int, required=True, help="per client")
    ap.add_argument("--progress", required=True)
    ap.add_argument("--drain-ms", type=int, default=DRAIN_MS, help="wait for stray replies")
    ap.add_argument("--until", type=float, default=float("inf"), help="monotonic: stop then")
    ap.add_argument("--window", type=float, nargs=2, default=(0.0, 0.0), help="count ok in it")
    args = ap.parse_args()
    jobs = json.loads(Path(args.jobs).read_text())
    tally = Tally(Path(args.progress), (args.window[0], args.window[1]))
    threads = [
        threading.Thread(
            target=client,
            args=(args.endpoint, job, args.requests, k, tally, args.drain_ms, args.until),
        )
        for k, job in enumerate(jobs)
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = tally.counts | {
        "busy_latency_max_s": round(tally.busy_latency_max_s, 3),
        "elapsed_s": round(time.monotonic() - t0, 3),
        "errors": tally.errors[:5],
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
