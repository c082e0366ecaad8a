"""The two cache tiers through the real stack, as ratios to the cold request of the same run.

Runs as root (like the tests): two throwaway users share one throwaway ESAF. For each image:
cold (a stage-1 key never seen), tier-1 warm (same user, new contrast: LRU hit + stage 2),
tier-2 warm (the other user of the ESAF: a different worker, served from Redis), and an exact
repeat. Targets: tier-1 <= 0.1 x cold, tier-2 <= 0.25 x cold. Then memory: 1,000 distinct
requests against a worker whose LRU is bounded to 64 MiB; its RSS before and after.

Prints a table; writes bench/results/cache.json.    python bench/cache.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import TESTDATA, median_ms, synth_images, table, write_json  # noqa: E402
from bench.pipeline import Client  # noqa: E402
from pyisdev.stack import Stack  # noqa: E402
from tests.support.accounts import Accounts  # noqa: E402

IMAGES = [
    ("Pilatus 6M CBF (synth)", "pilatus6m_2463x2527.cbf"),
    ("Eiger 16M frame (synth)", "eiger_master.h5"),
    ("Eiger 16M as CBF (real)", "dlsnxs2cbf_therm_0001.cbf"),
]
LRU_BYTES = 64 << 20


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--synth", type=Path, default=Path("/tmp/perf-images"))
    ap.add_argument("--distinct", type=int, default=1000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/cache.py needs root (it creates two throwaway users)", file=sys.stderr)
        return 2
    synth = synth_images(args.synth)
    base = Path(tempfile.mkdtemp(prefix="pyis-bench-cache-", dir="/tmp"))
    base.chmod(0o755)
    acc = Accounts.create(base / "homes")
    try:
        esaf = 980000 + int(acc.tag) % 10000
        group, home = acc.esaf(esaf)
        users = [acc.user(f"pyisb{acc.tag}"), acc.user(f"pyisc{acc.tag}")]
        for src in [*synth.iterdir(), TESTDATA / "cbf" / IMAGES[2][1]]:
            shutil.copy(src, home / Path(src).name)
            shutil.chown(home / Path(src).name, "root", group)
            (home / Path(src).name).chmod(0o640)
        config = base / "procmgr.toml"
        config.write_text(
            f'[procmgr]\nesaf_group = "e{{esaf}}"\nworker_cache_bytes = {LRU_BYTES}\n'
        )
        stack = Stack(base, ["--config", str(config)]).start()
        try:
            rows = [measure(stack, users, esaf, label, name, args.repeat) for label, name in IMAGES]
            memory = lru_memory(stack, users[0], esaf, args.distinct)
        finally:
            stack.stop()
    finally:
        acc.remove()
        shutil.rmtree(base, ignore_errors=True)
    cols = "image cold_ms tier1_ms tier1_x_cold tier2_ms tier2_x_cold repeat_ms note".split()
    print(table(rows, cols))
    for k, v in memory.items():
        print(f"{k}: {v}")
    print("written", write_json("cache", {"rows": rows, "memory": memory}))
    return 0


def measure(stack: Stack, users: list[str], esaf: int, label: str, name: str, n: int) -> dict:
    a = Client(stack.endpoint)
    pid_a, pid_b = (stack.sign_session(u, [esaf]) for u in users)
    job = {"type": "jpeg", "esaf": esaf, "fn": name}
    first = a(job | {"pid": pid_a, "xsize": 256})
    if first[0] != b"":
        return {"image": label, "note": first[0].decode()[:60]}
    b = Client(stack.endpoint)
    b(job | {"pid": pid_b, "xsize": 256})  # start the other user's worker outside the timing
    cold_ms, tier1_ms, tier2_ms = [], [], []
    for i in range(n):  # each round: a new stage-1 key, read by A, then B, then A again
        sized_a = job | {"xsize": 600 + i, "pid": pid_a}
        sized_b = sized_a | {"pid": pid_b}
        cold_ms.append(timed(lambda j=sized_a: a(j)))
        tier2_ms.append(timed(lambda j=sized_b: b(j)))
        tier1_ms.append(timed(lambda j=sized_a | {"contrast": 100 + i}: a(j)))
    cold, tier1, tier2 = (statistics.median(v) for v in (cold_ms, tier1_ms, tier2_ms))
    repeat = median_ms(lambda: a(job | {"pid": pid_a, "xsize": 600}), n)
    return {
        "image": label,
        "cold_ms": cold,
        "tier1_ms": tier1,
        "tier1_x_cold": tier1 / cold,
        "tier2_ms": tier2,
        "tier2_x_cold": tier2 / cold,
        "repeat_ms": repeat,
    }


def timed(fn) -> float:
    return median_ms(fn, 1, warmup=0)


def lru_memory(stack: Stack, user: str, esaf: int, distinct: int) -> dict:
    client = Client(stack.endpoint)
    pid = stack.sign_session(user, [esaf])
    job = {"type": "jpeg", "pid": pid, "esaf": esaf, "fn": "pilatus6m_2463x2527.cbf"}
    client(job | {"xsize": 64})
    status = stack.status_detail()
    uid = pwd.getpwnam(user).pw_uid
    (worker,) = [w["pid"] for w in status["workers"] if w["uid"] == uid and w["esaf"] == esaf]
    before = rss_kib(worker)
    curve = []  # RSS every 10 % of the run: bounded means it levels off, not that it is small
    for i in range(distinct):
        client(job | {"xsize": 200 + i % 800, "zoom": 1.0 + (i // 800)})
        if (i + 1) % max(1, distinct // 10) == 0:
            curve.append(rss_kib(worker))
    after = rss_kib(worker)
    workers = stack.status_detail()["workers"]
    (cache,) = [w["cache"] for w in workers if w["pid"] == worker]
    return {
        "lru_max_bytes": LRU_BYTES,
        "lru_bytes_after": cache.get("bytes"),
        "lru_evictions": cache.get("evictions"),
        "worker_rss_kib_before": before,
        "worker_rss_kib_after": after,
        "rss_growth_kib": after - before,
        "rss_kib_every_10_percent": curve,
        "rss_growth_second_half_kib": after - curve[len(curve) // 2 - 1] if curve else None,
    }


if __name__ == "__main__":
    sys.exit(main())
