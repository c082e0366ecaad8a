"""Work a reply need not wait for: sharing a result with the ESAF's other users.

A cold image in a warm worker used to send its reply only after encoding its reduction and
writing it to tier 2 (and releasing the cross-worker lock): a few ms on a quiet machine, 4-20 ms
under load, all of it on the user's clock. Within ``with AfterReply() as later:`` on a job
thread, :func:`later` queues such work instead; the thread sends the reply, then calls
``later.run()``. Outside one (warm-up, tests) it runs at once. Work that only keeps a result
for later (``optional``) may be dropped instead: a followed frame's, once a newer frame has
superseded it (worker/follow.py).

Run at once after the reply, that work still raced the reply itself: the tier-2 encode and SET
(and redis-server taking the value) ran while the procmgr, the proxy and the client carried the
reply, and while the worker served the next request of a burst (a new size right after a cold
image, a zoom right after that). On 2 cores a new Pilatus xsize spent 5 ms between the procmgr's
send and the proxy's receive. A worker's job threads hand their ``AfterReply`` to its
:class:`Deferred` instead, which runs it on a thread of its own once no job has been in hand for
``SETTLE_S``, or at the latest ``MOST_S`` after the reply (a worker kept busy still shares, and
another worker waiting on the single-flight lock, worker/tier2.py's ``LOCK_WAIT_S``, gets the
value well within its wait).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("worker.afterreply")
_queue = threading.local()  # this thread's AfterReply, while one is open
SETTLE_S = 0.01  # quiet this long: the reply has reached the client and no burst goes on
MOST_S = 0.1  # deferred at most this long after its reply, busy or not
CLOSE_WAIT_S = 5.0  # at exit, the rest gets this long (each tier-2 call times out in 0.1 s)


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


class Quiet:
    """When deferred work is due (the policy alone, on times passed in; not thread-safe): the
    oldest reply's work once no job has been in hand for ``settle_s``, or ``most_s`` after its
    reply whatever the worker is doing. Work runs in the order of its replies."""

    def __init__(self, settle_s: float, most_s: float, now: float) -> None:
        self.settle_s, self.most_s = settle_s, most_s
        self.queue: deque[tuple[float, AfterReply]] = deque()  # (its reply's time, its work)
        self.busy = 0  # jobs taken and not yet ended
        self.quiet_since = now  # when the last job ended

    def began(self) -> None:
        self.busy += 1

    def ended(self, now: float, after: AfterReply | None) -> None:
        self.busy = max(0, self.busy - 1)
        self.quiet_since = now
        if after is not None and after.pending:
            self.queue.append((now, after))

    def due(self, now: float) -> tuple[AfterReply | None, float | None]:
        """The oldest work, taken off the queue, if it is due; else None and the seconds until
        it will be if nothing changes meanwhile (None: nothing queued, nothing to wait for)."""
        if not self.queue:
            return None, None
        wait = self.queue[0][0] + self.most_s - now
        if self.busy == 0:
            wait = min(wait, self.quiet_since + self.settle_s - now)
        if wait > 0:
            return None, wait
        return self.queue.popleft()[1], 0.0


class Deferred:
    """One worker's after-reply work, run on a thread of its own when :class:`Quiet` says so.

    The worker's loop calls ``began`` as it takes a job, the job thread ``ended`` once the
    job's reply is sent (or the job is parked, as a follower's long-poll is), handing over the
    job's ``AfterReply``. ``close`` runs what is left at once (the worker is stopping).
    """

    def __init__(self, settle_s: float = SETTLE_S, most_s: float = MOST_S) -> None:
        self._cond = threading.Condition()
        self._quiet = Quiet(settle_s, most_s, time.monotonic())
        self._thread: threading.Thread | None = None
        self._closed = False

    def began(self) -> None:
        with self._cond:
            self._quiet.began()

    def ended(self, after: AfterReply | None) -> None:
        """A job's reply is sent; ``after`` holds its deferred work (None: nothing)."""
        with self._cond:
            if not self._closed:
                self._quiet.ended(time.monotonic(), after)
                if self._thread is None and self._quiet.queue:
                    self._thread = threading.Thread(
                        target=self._loop, name="after-reply", daemon=True
                    )
                    self._thread.start()
                self._cond.notify()
                return
        if after is not None:
            after.run()  # closing: nobody is left to wait for

    def _loop(self) -> None:
        while True:
            with self._cond:
                after, wait = self._quiet.due(time.monotonic())
                while after is None:
                    if self._closed and not self._quiet.queue:
                        return
                    self._cond.wait(wait)
                    after, wait = self._quiet.due(time.monotonic())
            after.run()

    def close(self) -> None:
        """Run everything still queued now, then stop the thread."""
        with self._cond:
            self._closed = True
            self._quiet.settle_s = self._quiet.most_s = 0.0
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(CLOSE_WAIT_S)
