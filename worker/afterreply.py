"""Work a reply need not wait for: sharing a result with the ESAF's other users.

A cold image in a warm worker used to send its reply only after encoding its reduction and
writing it to tier 2 (and releasing the cross-worker lock): a few ms on a quiet machine, 4-20 ms
under load, all of it on the user's clock. Within ``with AfterReply() as later:`` on a job
thread, :func:`later` queues such work instead; the thread sends the reply, then calls
``later.run()``. Outside one (warm-up, tests) it runs at once. Work that only keeps a result
for later (``optional``) may be dropped instead: a followed frame's, once a newer frame has
superseded it (worker/follow.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("worker.afterreply")
_queue = threading.local()  # this thread's AfterReply, while one is open


def later(fn: Callable[[], Any], optional: bool = False) -> None:
    """Run ``fn`` after this thread's reply is sent, or now if no reply is being made.
    ``optional``: it only keeps a result for later requests (never a lock's release)."""
    pending = getattr(_queue, "pending", None)
    if pending is None:
        fn()
    else:
        pending.append((fn, optional))


class AfterReply:
    """Collects this thread's :func:`later` work while open; ``run`` does it, in order."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[[], Any], bool]] = []

    def __enter__(self) -> AfterReply:
        _queue.pending = self.pending
        return self

    def __exit__(self, *exc: object) -> None:
        _queue.pending = None

    def run(self, optional: bool = True) -> None:
        """Each step whatever the others did: a lock release must follow a failed write.
        ``optional=False`` drops the optional steps (nobody will ask for their result)."""
        while self.pending:
            fn, skippable = self.pending.pop(0)
            if skippable and not optional:
                continue
            try:
                fn()
            except Exception:
                log.exception("work after a reply failed")
