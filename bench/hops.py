"""Same-run baselines for bench/interactive.py, each in a process of its own.

python -m bench.hops broker          a bare ROUTER/DEALER zmq.proxy (prints its endpoints)
python -m bench.hops echo EP SIZES   a REP server on EP answering frames of SIZES bytes
python -m bench.hops fork N [GAP]    N bare forks of a process that imported what the zygote
                                     imports (warm-up run), child ready on a pipe: ms each;
                                     each after GAP s idle, as a new session comes
python -m bench.hops floor HOME JOB  one job of the worker's pipeline in a fresh process, no
                                     server: read, reduce, map, encode (ms)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402,F401  (pins OpenMP to one thread, as in the workers)


def broker() -> int:
    import zmq

    ctx = zmq.Context()
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    front.bind("tcp://127.0.0.1:*")
    back.bind("tcp://127.0.0.1:*")
    print(front.getsockopt_string(zmq.LAST_ENDPOINT), back.getsockopt_string(zmq.LAST_ENDPOINT))
    sys.stdout.flush()
    zmq.proxy(front, back)
    return 0


def echo(endpoint: str) -> int:
    import zmq

    replies: dict[bytes, list[bytes]] = {}
    sock = zmq.Context().socket(zmq.REP)
    sock.connect(endpoint)
    print("READY")
    sys.stdout.flush()
    while True:
        sizes = sock.recv()
        if sizes not in replies:
            replies[sizes] = [b"x" * int(n) for n in json.loads(sizes)]
        sock.send_multipart(replies[sizes])


def fork(repeat: int, gap_s: float = 0.0) -> int:
    from worker import warmup

    warmup.tune_malloc()
    warmup.warm()
    warmup.freeze()  # as the zygote does
    out = []
    for _ in range(repeat):
        time.sleep(gap_s)
        r, w = os.pipe()
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.write(w, b"r")
            os._exit(0)
        os.read(r, 1)
        out.append((time.perf_counter() - t0) * 1000)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
    print(json.dumps(out))
    return 0


def floor(home: str, job: str) -> int:
    from worker import jobs, warmup

    warmup.tune_malloc()  # as every worker has it from the zygote: the floor is the same code
    pipeline = jobs.Pipeline(home=home, cache_bytes=0)
    t0 = time.perf_counter()
    pipeline.run(json.loads(job))
    print(json.dumps((time.perf_counter() - t0) * 1000))
    return 0


def run(*args: str) -> str:
    """Run a mode of this script in a fresh interpreter; its stdout."""
    argv = [sys.executable, "-m", "bench.hops", *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=common.REPO)
    return done.stdout


class Baseline:
    """A bare broker and echo server, running while the bench needs them."""

    def __init__(self) -> None:
        argv = [sys.executable, "-m", "bench.hops"]
        opts = {"stdout": subprocess.PIPE, "text": True, "cwd": common.REPO}
        self.broker = subprocess.Popen([*argv, "broker"], **opts)
        self.endpoint, backend = self.broker.stdout.readline().split()
        self.echo = subprocess.Popen([*argv, "echo", backend], **opts)
        self.echo.stdout.readline()

    def stop(self) -> None:
        for proc in (self.echo, self.broker):
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "broker":
        sys.exit(broker())
    if mode == "echo":
        sys.exit(echo(*rest))
    if mode == "fork":
        sys.exit(fork(int(rest[0]), float(rest[1]) if len(rest) > 1 else 0.0))
    if mode == "floor":
        sys.exit(floor(*rest))
    sys.exit(f"unknown mode {mode}")
