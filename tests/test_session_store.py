"""The web host's Redis cannot stall or swell the procmgr: every session lookup and progress
publish runs off the loop with an overall deadline and a size cap."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zmq

from procmgr.__main__ import dev_user
from tests.conftest import REPO
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack
from tests.support.hostile_redis import HostileRedis

DEADLINE_S = 3.0  # this test's session_timeout_s: long enough to act while a lookup hangs
RSS_BOUND_KIB = 16 << 10  # a lookup may cost the procmgr this much, never the 100 MB sent


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@contextmanager
def _hostile_stack(testdata: Path, markers: dict[bytes, str], config: str = "") -> Iterator:
    relay = HostileRedis(markers)
    body = f"session_timeout_s = {DEADLINE_S}\n{config}"
    try:
        with dev_stack(testdata, config=body, args=("--auth-redis", relay.url)) as stack:
            relay.target_port = stack.redis_port  # the procmgr connects at its first lookup
            yield stack, relay
    finally:
        relay.close()


def _send(endpoint: str, job: dict) -> zmq.Socket:
    """A request whose reply the test collects later."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sock.send(json.dumps(job).encode())
    return sock


def _status(endpoint: str) -> dict:
    return json.loads(ask(endpoint, {"pid": "monitor", "type": "status"})[2])


def test_a_trickled_session_reply_stalls_no_one_and_gets_one_busy_in_time(testdata):
    attacker = secrets.token_hex(16)
    with _hostile_stack(testdata, {attacker.encode(): "trickle"}) as (stack, relay):
        good = stack.sign_session(dev_user(), [0])
        job = {"type": "jpeg", "pid": good, "fn": "a.cbf", "xsize": 128}
        assert ask(stack.endpoint, job)[0] == b""  # the good user's worker is up
        t0 = time.monotonic()
        hung = _send(stack.endpoint, {"type": "jpeg", "pid": attacker, "fn": "a.cbf"})
        try:
            assert relay.attacking.acquire(timeout=10), "the lookup never reached the relay"
            for contrast in (10, 20, 30):  # served while the attacker's lookup hangs
                assert _status(stack.endpoint)["uptime_s"] > 0
                assert ask(stack.endpoint, job | {"contrast": contrast})[0] == b""
            assert relay.hanging == 1 and not hung.poll(0), "the hostile lookup ended early"
            assert hung.poll(int((DEADLINE_S + 5) * 1000)), "no reply for the hung lookup"
            reply = hung.recv_multipart()
            elapsed = time.monotonic() - t0
        finally:
            hung.close(0)
        assert error_code(reply) == "busy", reply
        assert f"no answer within {DEADLINE_S} s" in reply[0].decode(), reply
        assert elapsed < DEADLINE_S + 2.0  # the trickle itself would take 5.5 hours
        assert relay.sent < 100  # it gave up on the trickle, not waited it out
        # the miss opened the breaker; the store is used again after STORE_RETRY_S
        deadline = time.monotonic() + 30
        while ask(stack.endpoint, job | {"contrast": 40})[0] != b"":
            assert time.monotonic() < deadline, "the store was never used again"
            _status(stack.endpoint)  # a loop turn, not a sleep
        assert "access object store unavailable" in (stack.workdir / "procmgr.log").read_text()


def test_a_flooded_session_reply_is_cut_off_and_memory_stays_bounded(testdata):
    """A lying server: any reply is a 100 MB bulk string. The byte budget ends the call."""
    attacker = secrets.token_hex(16)
    with _hostile_stack(testdata, {attacker.encode(): "flood"}) as (stack, relay):
        good = stack.sign_session(dev_user(), [0])
        assert (
            ask(stack.endpoint, {"type": "jpeg", "pid": good, "fn": "a.cbf", "xsize": 128})[0]
            == b""
        )
        before = _rss_kib(stack.procmgr.pid)
        reply = ask(stack.endpoint, {"type": "jpeg", "pid": attacker, "fn": "a.cbf"})
        grown = _rss_kib(stack.procmgr.pid) - before
        assert error_code(reply) == "busy" and b"a reply over" in reply[0], reply
        assert grown < RSS_BOUND_KIB, f"procmgr RSS grew {grown} KiB"
        assert relay.sent < 100 << 20  # hung up on before the whole 100 MB


def test_a_100_mb_session_field_is_refused_unread(testdata):
    """A real redis-server holding a 100 MB ``isAuth``: HSTRLEN first, refused with a clear
    error, the procmgr's RSS stays flat, and other users are served (no breaker). The store's
    deadline is generous here: the size check is under test, not the deadline (which has its
    own tests), and a loaded CI box once took 0.5 s to answer."""
    with dev_stack(testdata, config="session_timeout_s = 5") as stack:
        good = stack.sign_session(dev_user(), [0])
        job = {"type": "jpeg", "pid": good, "fn": "a.cbf", "xsize": 128}
        assert ask(stack.endpoint, job)[0] == b""
        fat = secrets.token_hex(16)
        stack.redis.hset(fat, mapping={"isAuth": b"x" * (100 << 20), "isAuthSig": b"sig"})
        before = _rss_kib(stack.procmgr.pid)
        for _ in range(3):
            reply = ask(stack.endpoint, {"type": "jpeg", "pid": fat, "fn": "a.cbf"})
            assert error_code(reply) == "unauthorized", reply
            assert b"isAuth field is larger than 32768 bytes" in reply[0], reply
        grown = _rss_kib(stack.procmgr.pid) - before
        assert grown < RSS_BOUND_KIB, f"procmgr RSS grew {grown} KiB"
        assert ask(stack.endpoint, job | {"contrast": 9})[0] == b""  # no breaker for this
        stack.redis.delete(fat)


def test_a_stalled_progress_publish_does_not_hold_up_the_reply(testdata):
    """Progress goes to the web host's Redis too; a publish that hangs must not hold the loop
    (the index reply, status) while it does."""
    indexer = f'index_command = ["/usr/bin/python3", "{REPO / "tests" / "fake_indexer.py"}"]'
    with _hostile_stack(testdata, {b"PUBLISH": "trickle"}, config=indexer) as (stack, relay):
        pid = stack.sign_session(dev_user(), [0])
        reply = ask(stack.endpoint, {"pid": pid, "type": "index", "fn": "a.cbf", "tag": "t"})
        assert reply[0] == b"", reply
        # the publishes run on their own thread and may reach the relay just after the reply
        deadline = time.monotonic() + 10
        while relay.hanging < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert relay.hanging >= 1, "no publish was attacked"
        assert _status(stack.endpoint)["uptime_s"] > 0
