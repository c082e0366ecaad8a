"""What access checking costs per request, against baselines measured in the same run.

- signature verification, in process: a JWT (Ed25519, via the CA trust store) and the
  compatible isAuth (RSA-2048), and the memo hit that replaces both in the steady state;
- the procmgr's routing overhead: a ``status`` request through is-proxy and is-procmgr (no
  auth, no worker) against a bare ZeroMQ REQ/REP round trip on loopback;
- a warm request with a JWT (exact repeat, served from the worker's cache), to show the
  steady-state verification share of it (target: under 5 %).

Prints a table; writes bench/results/auth.json.   python bench/auth.py [--repeat 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authsign import compat, tokens  # noqa: E402
from bench.common import TESTDATA, median_ms, table, write_json  # noqa: E402
from bench.pipeline import Client  # noqa: E402
from certs.trust import TrustStore  # noqa: E402
from procmgr.__main__ import dev_user  # noqa: E402
from pyisdev.stack import Stack  # noqa: E402


def bare_round_trip(repeat: int) -> float:
    """REQ -> REP echo on tcp loopback, in this process: the floor for any routing."""
    ctx = zmq.Context.instance()
    rep = ctx.socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")

    def serve() -> None:
        for _ in range(repeat + 1):
            rep.send(rep.recv())

    threading.Thread(target=serve, daemon=True).start()
    req = ctx.socket(zmq.REQ)
    req.connect(f"tcp://127.0.0.1:{port}")

    def once() -> None:
        req.send(b'{"type":"status"}')
        req.recv()

    ms = median_ms(once, repeat)
    req.close(0)
    rep.close(0)
    return ms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args()
    n = args.repeat
    with tempfile.TemporaryDirectory(prefix="pyis-bench-auth-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        data = base / "data"
        data.mkdir()
        shutil.copy(TESTDATA / "cbf/thau_3_2_0001.cbf", data / "thau.cbf")
        for p in (data, data / "thau.cbf"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        stack = Stack(base, ["--dev", str(data)]).start()
        try:
            results = measure(stack, n)
        finally:
            stack.stop()
    rows = [{"what": k, "us": round(v * 1000, 1)} for k, v in results.items()]
    print(table(rows, ["what", "us"]))
    ratios = {
        "procmgr_routing_x_bare_zmq": results["status_through_stack"] / results["bare_zmq_rtt"],
        "memo_hit_share_of_warm_request": results["memo_hit"] / results["warm_jwt_request"],
        "jwt_verify_share_of_warm_request": results["jwt_verify"] / results["warm_jwt_request"],
    }
    for k, v in ratios.items():
        print(f"{k}: {v:.4f}")
    print("written", write_json("auth", {"ms": results, "ratios": ratios}))
    return 0


def measure(stack: Stack, n: int) -> dict[str, float]:
    user = dev_user()
    pid, token = stack.token(user, [0])
    trust = TrustStore(stack.ca_dir / "root.pem", stack.signing_dir, stack.crl)

    def jwt_once() -> None:
        tokens.verify(token, trust.key_for, pid=pid, aud="pyis", job_type="jpeg")

    isauth = compat.make_isauth("s", user, [0], 600)
    sig = compat.sign(stack.key, isauth)
    pub = stack.key.public_key()
    memo = {b"x" * 32: object()}

    def memo_once() -> None:  # what AccessChecker does on a hit: hash the object, look it up
        memo.get(hashlib.sha256(repr((pid, "jpeg", token)).encode()).digest())

    client = Client(stack.endpoint)
    job = {"type": "jpeg", "pid": pid, "auth": token, "fn": "thau.cbf", "xsize": 512}
    client(job)  # cold once; then every request is an exact repeat
    t0 = time.perf_counter()
    out = {
        "jwt_verify": median_ms(jwt_once, n),
        "compat_rsa_verify": median_ms(lambda: compat.verify(pub, isauth, sig, "s"), n),
        "memo_hit": median_ms(memo_once, n),
        "bare_zmq_rtt": bare_round_trip(n),
        "status_through_stack": median_ms(lambda: client({"pid": "b", "type": "status"}), n),
        "warm_jwt_request": median_ms(lambda: client(job), n // 4),
    }
    out["bench_seconds"] = time.perf_counter() - t0
    return out


if __name__ == "__main__":
    sys.exit(main())
