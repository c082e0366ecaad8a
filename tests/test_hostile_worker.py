"""A compromised worker against the real procmgr: it can lose its own session, nothing more.

Each test takes over a real worker's channel (tests/support/hijack.py) and speaks the wire
protocol as an attacker would: invented error codes and counter names, a message announced
far over the limit, a message left half sent.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from pyis_common import workerchannel
from pyis_common.workerstats import CACHE_COUNTERS
from pyisdev.stack import Stack
from tests.conftest import need_root
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack, jpeg_job, started_worker
from tests.support.hijack import worker_channel
from worker.jobs import Pipeline
from worker.tier2 import RedisTier

MESSAGE_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def stack(testdata) -> Iterator[Stack]:
    need_root()  # taking over another process's socket needs ptrace rights
    config = f"worker_message_timeout_s = {MESSAGE_TIMEOUT_S}\nrequest_timeout_s = 30.0"
    with dev_stack(testdata, config, args=("--metrics", "127.0.0.1:0")) as stack:
        yield stack


def hijacked(stack: Stack, esaf: int) -> socket.socket:
    """Start the worker of ``esaf`` with one real request, then take over its channel."""
    return worker_channel(started_worker(stack, esaf), stack.procmgr.pid)


def in_background(stack: Stack, esaf: int) -> tuple[list[list[bytes]], threading.Thread]:
    replies: list[list[bytes]] = []
    job = jpeg_job(stack, esaf)
    thread = threading.Thread(target=lambda: replies.append(ask(stack.endpoint, job)))
    thread.start()
    return replies, thread


def next_job(chan: workerchannel.Channel) -> dict:
    msg = chan.recv()
    assert msg is not None and msg[0]["t"] == workerchannel.MSG_JOB, msg
    return msg[0]


def metrics(stack: Stack) -> str:
    address = stack.procmgr.fields()["metrics"]
    return urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        (line,) = [ln for ln in fh if ln.startswith("VmRSS:")]
    return int(line.split()[1])


def test_invented_codes_and_counters_never_become_labels(stack):
    chan = workerchannel.Channel(hijacked(stack, 21))
    for i in range(5):
        replies, thread = in_background(stack, 21)
        rid = next_job(chan)["id"]
        reply = {
            "t": workerchannel.MSG_REPLY,
            "id": rid,
            "ok": False,
            "code": f"evilcode{i}" + "x" * 9000,
        }
        reply["error"] = "no"
        reply["cache"] = {f"evilcounter{i}" + "y" * 9000: 1, "hits": "7", "misses": 1 << 70}
        reply["cache"] |= {"bytes": True, "entries": -5, "evictions": 3}
        chan.send(reply)
        thread.join(30)
        assert error_code(replies[0]) == "internal"
    text = metrics(stack)
    assert "evil" not in text
    assert 'pyis_worker_cache{counter="evictions"} 3.0' in text  # the one honest counter
    assert 'pyis_requests_total{outcome="internal",type="jpeg"} 5.0' in text
    assert "evil" not in (stack.workdir / "procmgr.log").read_text()


def test_a_message_announced_over_the_limit_loses_the_worker_at_once(stack):
    sock = hijacked(stack, 22)
    chan = workerchannel.Channel(sock)
    replies, thread = in_background(stack, 22)
    next_job(chan)
    rss_before = rss_kib(stack.procmgr.pid)
    lengths = [workerchannel.MAX_PAYLOAD] * workerchannel.MAX_PAYLOADS  # 1 GiB announced
    prefix = workerchannel.PREFIX.pack(workerchannel.VERSION, 100, len(lengths))
    sock.sendall(prefix + b"".join(workerchannel.LENGTH.pack(n) for n in lengths))
    sent, junk = 0, b"\0" * (1 << 20)
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        while sent < 512 << 20:  # the procmgr stops reading long before this
            sock.sendall(junk)
            sent += len(junk)
    thread.join(30)
    assert error_code(replies[0]) == "internal"
    assert rss_kib(stack.procmgr.pid) - rss_before < 32 << 10
    assert "over the 134217728 limit" in (stack.workdir / "procmgr.log").read_text()
    assert ask(stack.endpoint, jpeg_job(stack, 22))[0] == b""  # a fresh worker serves the session


def test_a_message_left_half_sent_loses_the_worker(stack):
    sock = hijacked(stack, 23)
    chan = workerchannel.Channel(sock)
    replies, thread = in_background(stack, 23)
    rid = next_job(chan)["id"]
    whole = workerchannel.encode(
        {"t": workerchannel.MSG_REPLY, "id": rid, "ok": True, "pad": "z" * 200}
    )
    sock.sendall(whole[:50])
    # a trickle: the worker is never silent, and the message is never done
    for byte in whole[50:-1]:
        if not thread.is_alive():
            break
        time.sleep(MESSAGE_TIMEOUT_S / 4)
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
    thread.join(30)
    assert error_code(replies[0]) == "internal"  # not timeout: the request deadline is 30 s
    assert "sent half a message" in (stack.workdir / "procmgr.log").read_text()


def test_status_shows_only_known_counters(stack):
    status = json.loads(ask(stack.endpoint, {"pid": "monitor", "type": "status"})[2])
    assert all("evil" not in name for name in status.get("cache", {}))


def test_every_counter_a_real_worker_reports_is_a_known_one(tmp_path):
    """A counter added to the worker but not to CACHE_COUNTERS would silently vanish."""
    pipeline = Pipeline(home=str(tmp_path))
    pipeline.tier2 = RedisTier("redis://127.0.0.1:1/0", "e1:", 60)  # connects only when used
    assert set(pipeline.counters()) <= CACHE_COUNTERS
