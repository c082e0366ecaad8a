"""``session_memo_s``: a session hash read recently is reused (no Redis round trip), and a
revocation is still seen, at most that long later. Off by default (tests elsewhere show a
revocation stopping the very next request)."""

from __future__ import annotations

import time

import pytest

from procmgr import sessionmemo
from procmgr.__main__ import dev_user
from procmgr.sessionmemo import SessionMemo
from procmgr.sessions import FIELDS, Session
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack

HOLD_S = 3.0


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


def lookups(stack) -> int:
    stats = stack.redis.info("commandstats")
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


def test_a_remembered_session_skips_the_lookup_and_a_revocation_still_lands(testdata) -> None:
    with dev_stack(testdata, f"session_memo_s = {HOLD_S}") as stack:
        pid = stack.sign_session(dev_user(), [0])
        job = {"pid": pid, "type": "meta", "fn": "a.cbf"}
        assert ask(stack.endpoint, job)[0] == b""
        before = lookups(stack)
        t0 = time.monotonic()
        for _ in range(5):
            assert ask(stack.endpoint, job)[0] == b""
        if time.monotonic() - t0 < HOLD_S:  # all five inside the hold: not one lookup
            assert lookups(stack) == before
        stack.redis.hset(pid, "revoked", "1")
        revoked_at = time.monotonic()
        while True:  # each request is a real one; the memo must let go within HOLD_S
            reply = ask(stack.endpoint, job)
            if reply[0] != b"":
                break
            assert time.monotonic() - revoked_at < HOLD_S + 2.0, "revocation never seen"
        assert error_code(reply) == "unauthorized"
        other = stack.sign_session(dev_user(), [0])  # another session is read, not memoized
        assert ask(stack.endpoint, {**job, "pid": other})[0] == b""
