"""Credit, heartbeats and sticky routing between one proxy and its image hosts (procmgrs):
a silent host's requests are answered at once with a retryable error, it is used again when
it is heard, sessions stick to a host and spill over, and a dead web host costs only its own."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable

import pytest
import zmq

from is_proxy.hosts import SESSION_SHARE, Hosts, session_key
from procmgr.__main__ import dev_user
from pyis_common import hostlink
from pyisdev import procs
from pyisdev.stack import Stack
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack
from tests.test_control import statistics

SLACK_S = 3.0  # a loaded 2-core CI box may run a process's loop late by this much


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    end = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < end, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)


def hosts(stack: Stack) -> list[dict]:
    return statistics(stack.control)["hosts"]


def job(stack: Stack, pid: str | None = None) -> dict:
    pid = pid or stack.sign_session(dev_user(), [0])
    return {"type": "jpeg", "pid": pid, "esaf": 0, "fn": "a.cbf", "xsize": 64}


def test_a_silent_host_has_its_requests_answered_busy_at_once_and_is_used_again(testdata):
    with dev_stack(testdata) as stack:
        wait_until("the procmgr is heard", lambda: len(hosts(stack)) == 1)
        request = job(stack)
        assert ask(stack.endpoint, request)[0] == b""
        os.kill(stack.procmgr.pid, signal.SIGSTOP)  # hung: TCP open, nothing answers
        try:
            t0 = time.monotonic()
            reply = ask(stack.endpoint, request, timeout_ms=30000)
            answered_s = time.monotonic() - t0
            stats = statistics(stack.control)
        finally:
            os.kill(stack.procmgr.pid, signal.SIGCONT)
        assert error_code(reply) == "busy"
        assert answered_s <= hostlink.HOST_DEAD_AFTER_S + SLACK_S
        assert stats["host_lost"] == 1 and stats["hosts"] == []
        # heard again: used again, with no restart; its late answer is dropped, not forwarded
        wait_until("the procmgr is heard again", lambda: len(hosts(stack)) == 1)
        assert ask(stack.endpoint, request)[0] == b""
        wait_until("the late reply dropped", lambda: statistics(stack.control)["late_replies"])


def served(stack: Stack) -> dict[str, int]:
    return {h["name"]: h["served"] for h in hosts(stack)}


def test_sessions_stick_to_one_host_and_spread_over_all(testdata):
    with dev_stack(testdata) as stack:
        stack.start_procmgr()  # a second image host on the same proxy
        wait_until("both procmgrs are heard", lambda: len(hosts(stack)) == 2)
        used = set()
        for _ in range(2):
            request = job(stack)
            before = served(stack)
            for _ in range(5):
                assert ask(stack.endpoint, request)[0] == b""
            after = served(stack)
            gained = {name: after[name] - before[name] for name in after}
            assert sorted(gained.values()) == [0, 5], gained  # one session, one host
            used |= {name for name, n in gained.items() if n}
        assert len(used) == 2  # the second session went to the other host


def test_a_dead_web_host_costs_only_its_own_clients(testdata):
    second: list[procs.Proc] = []

    def add_proxy(stack: Stack) -> list[str]:
        argv = [*procs.pyis_command("is_proxy"), "--frontend", "tcp://127.0.0.1:*"]
        argv += ["--backend", "tcp://127.0.0.1:*", *stack.proxy_curve_args()]
        second.append(procs.Proc(argv, lambda line: line.startswith("READY")))
        second[0].wait_ready()
        return ["--proxy", second[0].fields()["backend"]]

    with dev_stack(testdata, before_start=add_proxy) as stack:
        other = second[0]
        try:
            request = job(stack)
            assert ask(other.fields()["frontend"], request)[0] == b""
            assert ask(stack.endpoint, request)[0] == b""
            os.kill(other.pid, signal.SIGKILL)
            other.stop()
            for _ in range(20):  # the procmgr serves the web host still up, undisturbed
                assert ask(stack.endpoint, request, timeout_ms=10000)[0] == b""
            assert statistics(stack.control)["host_lost"] == 0
        finally:
            other.stop()


def test_routing_rules_stick_spill_and_fall_back():
    table, now = Hosts(), time.monotonic()
    for rid in (b"a", b"b"):
        table.heard(rid, hostlink.Heartbeat(SESSION_SHARE * 2, rid.decode()), now)
    first = table.choose(("s1", "1"))
    second = table.choose(("s2", "1"))
    assert {first.rid, second.rid} == {b"a", b"b"}  # new sessions spread
    tags = [table.start(first, [], ("s1", "1")) for _ in range(2)]  # s1's share on its host
    assert table.choose(("s1", "1")) is second  # spills over...
    table.finish(tags.pop())
    assert table.choose(("s1", "1")) is first  # ...and comes back: still sticky
    table.start(first, [], ("s1", "1"))
    flights = table.remove(table.hosts[first.rid])  # gone: its flights handed back
    assert len(flights) == 2 and not table.flights
    assert table.choose(("s1", "1")) is second  # falls back to the host still there
    assert table.silent(now + hostlink.HOST_DEAD_AFTER_S + 1)[0][0] is second
    assert table.choose(("s1", "1")) is None


def test_sessions_move_onto_a_host_that_comes_back():
    table, now = Hosts(), time.monotonic()
    table.heard(b"a", hostlink.Heartbeat(64, "a"), now)
    sessions = [(f"s{i}", "1") for i in range(4)]
    assert {table.choose(key).rid for key in sessions} == {b"a"}
    table.heard(b"b", hostlink.Heartbeat(64, "b"), now)  # back after a partition
    for key in sessions * 2:
        table.choose(key)
    assert sorted(Counter(table.sticky.values()).values()) == [2, 2]


@pytest.mark.parametrize(
    "body",
    [
        b'{"pid":"abc","type":"jpeg","esaf":12}',
        b'{"pid": "abc", "esaf": 0, "fn": "x"}',
        b'{"type":"status","pid":"x"}',
        b' {"pid":"x","esaf":-3} ',
        b'{"pid":"a\\"b","esaf":1}',  # an escape: parsed
        b'{"pid":"a","esaf":1.5}',
        b'{"pid":"a","esaf":"7"}',
        b'{"pid":"a","pid":"b"}',  # repeated: the last, as the JSON has it
        b'{"pid":"x","e":{"esaf":3}}',  # nested: parsed
        b'{"fn":"\\"pid\\": \\"z\\"","pid":"q"}',
        b'{"pid":"\xc3\xa9"}',
        b'[{"pid":"a"}]',
        b'{"pid":"x"',
        b"\xff",
    ],
)
def test_the_session_key_read_off_the_bytes_is_the_parsed_ones(body):
    """The sticky key of a flat request is read without a parse; it is the parse's key."""

    def parsed() -> tuple[str, str] | None:
        try:
            job = json.loads(body)
        except ValueError:
            return None
        if not isinstance(job, dict):
            return None
        return str(job.get("pid", ""))[:128], str(job.get("esaf", ""))[:32]

    assert session_key([zmq.Frame(body)]) == parsed()
