"""Bounds on what all sessions together may hold: the number of workers."""

from __future__ import annotations

from procmgr.__main__ import dev_user
from tests.support.client import ask, error_code
from tests.support.devsite import dev_stack


def test_a_session_over_max_workers_gets_busy_and_the_others_keep_working(testdata):
    with dev_stack(testdata, "max_workers = 2") as stack:

        def job(esaf: int) -> dict:
            return {
                "type": "jpeg",
                "pid": stack.sign_session(dev_user(), [esaf]),
                "esaf": esaf,
                "fn": "a.cbf",
            }

        assert ask(stack.endpoint, job(61))[0] == b""
        assert ask(stack.endpoint, job(62))[0] == b""
        reply = ask(stack.endpoint, job(63))
        assert error_code(reply) == "busy" and b"too many sessions" in reply[0]
        assert ask(stack.endpoint, job(61))[0] == b""  # a session with a worker is served
        assert "max_workers (2) reached" in (stack.workdir / "procmgr.log").read_text()
