"""``session_memo_s``: a session hash read recently is reused (no Redis round trip) while the
session Redis's keyspace notifications are watched, and a revocation, a logout or notifications
turned off are still seen by the next request (procmgr/sessionmemo.py, sessionwatch.py)."""

from __future__ import annotations

import time

import pytest

from procmgr import sessionmemo, sessionwatch
from procmgr.__main__ import dev_user
from procmgr.sessionmemo import SessionMemo
from procmgr.sessions import FIELDS, Session
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack

HOLD_S = 3.0
WAIT_S = 30.0  # the watch subscribes within a round trip; this only bounds a broken one


def session(revoked: bytes | None = None, exists: bool = True) -> Session:
    fields = (b"{}", b"sig", None, revoked)
    assert len(fields) == len(FIELDS) and FIELDS[sessionmemo.REVOKED] == "revoked"
    return Session(exists, fields)


def test_the_memo_holds_for_its_time_and_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(sessionmemo.time, "monotonic", lambda: now[0])
    memo = SessionMemo(HOLD_S, max_entries=3)
    memo.put("a", session())
    assert memo.get("a") is not None
    now[0] += HOLD_S
    assert memo.get("a") is None and len(memo) == 0  # expired, and forgotten
    memo.put("gone", session(exists=False))
    memo.put("revoked", session(revoked=b"1"))
    assert memo.get("gone") is None and memo.get("revoked") is None  # always read again
    for pid in "wxyz":
        memo.put(pid, session())
    assert len(memo) == 3 and memo.get("w") is None and memo.get("z") is not None
    off = SessionMemo(0.0)
    off.put("a", session())
    assert off.get("a") is None


def test_a_drop_forgets_the_session_and_a_read_begun_before_it_is_not_kept() -> None:
    memo = SessionMemo(HOLD_S)
    memo.put("a", session())
    began = memo.generation  # a lookup of "b" starts
    memo.drop("a")  # a notification for "a" (or anything) is handled meanwhile
    assert memo.get("a") is None
    memo.put("b", session(), since=began)  # its read may predate that change: not kept
    assert memo.get("b") is None
    memo.put("b", session(), since=memo.generation)
    assert memo.get("b") is not None


@pytest.mark.parametrize(
    ("flags", "enough"),
    [("", False), ("Kghxe", True), ("KA", True), ("AKE", True), ("Egx", False), ("Kgh", False)],
)
def test_the_watch_needs_keyspace_events_of_every_kind_that_ends_a_session(flags, enough):
    assert sessionwatch.covers(flags) is enough


def lookups(stack) -> int:
    stats = stack.redis.info("commandstats")
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


def wait_for_log(stack, words: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while words not in (stack.workdir / "procmgr.log").read_text():
        assert time.monotonic() < deadline, f"never logged: {words}"
        time.sleep(0.05)


def test_a_remembered_session_skips_the_lookup_and_a_revocation_lands_at_the_next_request(
    testdata,
) -> None:
    with dev_stack(testdata, f"session_memo_s = {HOLD_S}") as stack:
        pid = stack.sign_session(dev_user(), [0])
        job = {"pid": pid, "type": "meta", "fn": "a.cbf"}
        assert ask(stack.endpoint, job)[0] == b""  # the first read starts the watch
        wait_for_log(stack, "session memo on")
        assert ask(stack.endpoint, job)[0] == b""  # read, and remembered
        before = lookups(stack)
        t0 = time.monotonic()
        for _ in range(5):
            assert ask(stack.endpoint, job)[0] == b""
        if time.monotonic() - t0 < HOLD_S:  # all five inside the hold: not one lookup
            assert lookups(stack) == before
        stack.redis.hset(pid, "revoked", "1")  # its notification precedes this reply
        assert error_code(ask(stack.endpoint, job)) == "unauthorized"
        other = stack.sign_session(dev_user(), [0])
        assert ask(stack.endpoint, {**job, "pid": other})[0] == b""
        assert ask(stack.endpoint, {**job, "pid": other})[0] == b""  # remembered now
        stack.redis.delete(other)  # a logout
        assert error_code(ask(stack.endpoint, {**job, "pid": other})) == "unauthorized"


def test_with_notifications_turned_off_every_request_reads_its_session(testdata) -> None:
    with dev_stack(testdata, f"session_memo_s = {HOLD_S}") as stack:
        pid = stack.sign_session(dev_user(), [0])
        job = {"pid": pid, "type": "meta", "fn": "a.cbf"}
        assert ask(stack.endpoint, job)[0] == b""
        wait_for_log(stack, "session memo on")
        stack.redis.config_set("notify-keyspace-events", "")
        wait_for_log(stack, "session memo off (keyspace notifications were turned off)")
        before = lookups(stack)
        for _ in range(3):
            assert ask(stack.endpoint, job)[0] == b""
        assert lookups(stack) == before + 3
