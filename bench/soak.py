"""Soak: many requests from concurrent clients, some hostile, with workers killed on purpose.

N requests (default 10,000) from 8 REQ clients over mixed formats, 5 % hostile (garbage, path
traversal, multipart floods of 16 x 1 MiB and of many small frames, crafted bomb files,
tests/support/bombs.py, which must be answered ``unsupported:``, a session whose ``isAuth``
field is 1 MiB), and every 1,000 requests one worker killed: SIGKILLed, or (as root) killed
mid-reply, its channel taken over (tests/support/hijack.py), half a reply sent and the channel
closed. Every request must get exactly one reply: a lost reply (none
within the client's timeout) or a wrong one (a hostile request served, a good one answered with
a malformed reply) is counted; ``internal:`` for a request caught in a killed worker is the
right answer and is counted separately. Prints p50/p99 latency and the RSS of the procmgr and
of the workers after warm-up and at the end. Writes bench/results/soak.json.

    python bench/soak.py [--requests 10000] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import TESTDATA, write_json  # noqa: E402
from procmgr.__main__ import dev_user  # noqa: E402
from pyis_common import workerchannel  # noqa: E402
from pyisdev.stack import Stack  # noqa: E402
from tests.support import bombs  # noqa: E402
from tests.support.hijack import worker_channel  # noqa: E402
from tests.support.proctree import children, zygote_of  # noqa: E402

FILES = [
    "cbf/thau_3_2_0001.cbf",
    "cbf/l-cyst_01_00001.cbf",
    "marccd/somedata_0001.mccd",
    "eiger/eiger2_simread7_2datafiles_4images_bslz4_data_000001.h5",
    "dicom/MR_small.dcm",
    "smv/TIMEPIX_SU_512-stdgoni_0001.img",
    "other/F2K_Seb_Lyso0675.edf",
]
HOSTILE = [
    b"not json",
    b"[1,2]",
    b'{"pid": 5}',
    b'{"pid":"x","type":"rsync_transfer"}',
    b'{"pid":"x","xsize":1e9}',
    None,
    "bomb",
    [b"x" * (1 << 20)] * 16,  # a multipart flood: each frame within MAXMSGSIZE, the whole not
    [b'{"pid":"x"}'] * 8,  # many small frames
    "oversized session field",
]  # None: a path traversal with a valid session; "bomb": a crafted bomb file, valid session;
# a list: the frames of one multipart message; "oversized session field": a session the web
# host's Redis bloated
FAT_FIELD_BYTES = 1 << 20  # far over session_max_field_bytes (32 KiB): refused unread
TIMEOUT_MS = 30000
KILL_EVERY = 1000


class Soak:
    def __init__(self, stack: Stack, total: int, clients: int) -> None:
        self.stack, self.total, self.clients = stack, total, clients
        self.pid = stack.sign_session(dev_user(), [0])
        self.fat_pid = stack.sign_session(dev_user(), [0])
        stack.redis.hset(self.fat_pid, "isAuth", b"x" * FAT_FIELD_BYTES)
        self.lock = threading.Lock()
        self.sent = 0
        self.counts = {"ok": 0, "expected_error": 0, "killed": 0, "lost": 0, "wrong": 0}
        self.kills = {"sigkill": 0, "mid_reply": 0}
        self.latencies: list[float] = []
        self.wrong: list[str] = []  # the first few wrong replies, to say what went wrong
        self.rss_start: dict[str, int] = {}
        self.bombs = [
            json.dumps({"type": "jpeg", "pid": self.pid, "fn": f"bombs/{name}"}).encode()
            for name in bombs.BOMBS
        ]

    def next_job(self, rng: random.Random) -> tuple[bytes | list[bytes], bool]:
        """(request frame, is hostile)."""
        if rng.random() < 0.05:
            raw = rng.choice(HOSTILE)
            if raw is None:
                raw = json.dumps(
                    {"type": "jpeg", "pid": self.pid, "fn": "../../etc/shadow"}
                ).encode()
            elif raw == "bomb":
                raw = rng.choice(self.bombs)
            elif raw == "oversized session field":
                raw = json.dumps(
                    {"type": "jpeg", "pid": self.fat_pid, "fn": Path(FILES[0]).name}
                ).encode()
            return raw, True
        name = Path(rng.choice(FILES)).name
        job = {
            "pid": self.pid,
            "type": "jpeg",
            "fn": name,
            "xsize": rng.choice([256, 384, 512]),
            "contrast": rng.choice([0, 50, 200]),
            "tag": rng.randrange(1 << 30),
        }
        return json.dumps(job).encode(), False

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        ctx = zmq.Context.instance()
        sock = None
        while True:
            with self.lock:
                if self.sent >= self.total:
                    break
                self.sent += 1
                n = self.sent
            if sock is None:
                sock = ctx.socket(zmq.REQ)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(self.stack.endpoint)
            raw, hostile = self.next_job(rng)
            t0 = time.perf_counter()
            if isinstance(raw, list):
                sock.send_multipart(raw)
            else:
                sock.send(raw)
            if not sock.poll(TIMEOUT_MS, zmq.POLLIN):
                self.count("lost")
                sock.close(0)
                sock = None  # a REQ socket without its reply cannot send again
                continue
            reply = sock.recv_multipart()
            self.latencies.append((time.perf_counter() - t0) * 1000)
            verdict = self.judge(raw, hostile, reply)
            self.count(verdict)
            if verdict == "wrong" and len(self.wrong) < 5:
                self.wrong.append(f"{raw[:120]!r} -> {reply[0][:160]!r} ({len(reply)} frames)")
            if n % KILL_EVERY == 0 and n < self.total:
                if n % (2 * KILL_EVERY) == 0 and os.geteuid() == 0:
                    self.kill_mid_reply(rng)
                else:
                    self.kill_a_worker(rng)
            if n == min(500, self.total // 4):
                self.rss_start = self.rss()
        if sock is not None:
            sock.close(0)

    def judge(self, raw: bytes | list[bytes], hostile: bool, reply: list[bytes]) -> str:
        if reply[0] != b"":
            if len(reply) != 1:
                return "wrong"
            if raw in self.bombs:  # refused by the byte budget, not by running out of memory
                if reply[0].startswith(b"internal:"):
                    return "killed"  # it was in the worker killed on purpose
                return "expected_error" if reply[0].startswith(b"unsupported:") else "wrong"
            if hostile:
                return "expected_error"
            return "killed" if reply[0].startswith(b"internal:") else "wrong"
        if hostile or len(reply) != 4 or not reply[3].startswith(b"\xff\xd8"):
            return "wrong"
        return "ok" if json.loads(reply[1]).get("tag") == json.loads(raw)["tag"] else "wrong"

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def worker_pids(self) -> list[int]:
        return sorted(children(zygote_of(self.stack.procmgr.pid)))

    def kill_a_worker(self, rng: random.Random) -> None:
        pids = self.worker_pids()
        if pids:
            os.kill(rng.choice(pids), signal.SIGKILL)
            self.kills["sigkill"] += 1

    def kill_mid_reply(self, rng: random.Random) -> None:
        """A worker that dies halfway through a reply: the procmgr holds a partial message,
        then EOF; every request of that worker must be answered internal:, once."""
        pids = self.worker_pids()
        if not pids:
            return
        worker = rng.choice(pids)
        sock = worker_channel(worker, self.stack.procmgr.pid)
        sock.settimeout(5.0)
        try:
            msg = workerchannel.Channel(sock).recv()
            if msg is not None and msg[0].get("t") == workerchannel.MSG_JOB:
                reply = {
                    "t": workerchannel.MSG_REPLY,
                    "id": msg[0]["id"],
                    "ok": True,
                    "job": {},
                    "meta": {},
                }
                data = workerchannel.encode(reply, [b"\xff\xd8" + bytes(200_000)])
                sock.sendall(data[: len(data) // 2])
        except OSError:
            pass  # no job came, or the procmgr already dropped it: still a kill
        finally:
            sock.close()
            os.kill(worker, signal.SIGKILL)
            self.kills["mid_reply"] += 1

    def rss(self) -> dict[str, int]:
        workers = self.worker_pids()
        return {
            "procmgr_kib": rss_kib(self.stack.procmgr.pid),
            "workers_kib": sum(rss_kib(p) for p in workers),
            "workers": len(workers),
        }


def proxy_statistics(endpoint: str) -> dict:
    """The proxy's own counters, over its (private ipc) control socket."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(b"STATISTICS")
        return json.loads(sock.recv()) if sock.poll(TIMEOUT_MS, zmq.POLLIN) else {}
    finally:
        sock.close(0)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyis-soak-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        data = base / "data"
        data.mkdir(mode=0o755)
        for rel in FILES:
            (data / Path(rel).name).write_bytes((TESTDATA / rel).read_bytes())
            (data / Path(rel).name).chmod(0o644)
        for bomb in bombs.write_all(data / "bombs"):
            bomb.chmod(0o644)
        (data / "bombs").chmod(0o755)
        stack = Stack(base, ["--dev", str(data)]).start()
        try:
            soak = Soak(stack, args.requests, args.clients)
            t0 = time.perf_counter()
            threads = [threading.Thread(target=soak.client, args=(i,)) for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.perf_counter() - t0
            rss_end = soak.rss()
            refused = proxy_statistics(stack.control).get("refused")
        finally:
            stack.stop()
    lat = sorted(soak.latencies)
    report = {
        "requests": args.requests,
        "clients": args.clients,
        "seconds": round(seconds, 2),
        "requests_per_s": round(args.requests / seconds, 1),
        **soak.counts,
        "workers_killed": soak.kills,
        "p50_ms": round(statistics.median(lat), 2),
        "p99_ms": round(lat[int(len(lat) * 0.99)], 2),
        "proxy_refused_oversized": refused,  # multipart floods, none of them forwarded
        "rss_after_warmup": soak.rss_start,
        "rss_end": rss_end,
        "wrong_examples": soak.wrong,
    }
    start, end = soak.rss_start.get("procmgr_kib", 0), rss_end["procmgr_kib"]
    report["procmgr_rss_growth"] = round((end - start) / start, 3) if start else None
    for key, value in report.items():
        print(f"{key}: {value}")
    print("written", write_json("soak", report))
    return 0 if soak.counts["lost"] == soak.counts["wrong"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
