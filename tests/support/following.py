"""What the follow tests of the gateway and the browser read from the stack: how many
``newest`` long-polls wait at the session's worker, and how many were answered."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.support.client import ask, meta_of


def status(site) -> dict:
    """The procmgr's status, after a request to the session's worker (its counters come
    back with its replies)."""
    ask(site.stack.endpoint, {"pid": site.pid, "type": "meta", "fn": "series/thau_0001.cbf"})
    _, out = meta_of(ask(site.stack.endpoint, {"pid": "monitor", "type": "status"}))
    return out


def parked(site) -> int:
    """Long-polls waiting at the worker now."""
    return status(site)["cache"].get("followers", 0)


def newest_answered(site) -> int:
    return sum(status(site).get("latency", {}).get("newest", []))


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
