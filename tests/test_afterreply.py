"""Work left for after a reply (worker/afterreply.py): when a worker's ``Deferred`` runs it.

The policy (``Quiet``) on times given to it: nothing runs while the worker has a job in hand
until ``most_s`` after its reply; a quiet worker runs it ``settle_s`` after its last reply; work
runs in the order of its replies. The thread itself: it runs the work, and ``close`` runs what
is still queued at once, whatever the policy would have said.
"""

from __future__ import annotations

import threading

from worker.afterreply import AfterReply, Deferred, Quiet, later


def _work(ran: list[str], name: str) -> AfterReply:
    with AfterReply() as after:
        later(lambda: ran.append(name))
    return after


def test_a_busy_worker_defers_until_most_s_after_the_reply():
    ran: list[str] = []
    quiet = Quiet(settle_s=0.01, most_s=0.1, now=0.0)
    quiet.began()
    quiet.began()  # the next request of a burst arrived before this one was answered
    quiet.ended(1.0, _work(ran, "cold"))
    work, wait = quiet.due(1.05)  # the settle time has passed, but a job is in hand
    assert work is None and wait is not None and abs(wait - 0.05) < 1e-9
    work, _ = quiet.due(1.1)
    assert work is not None
    work.run()
    assert ran == ["cold"]


def test_a_quiet_worker_runs_it_settle_s_after_its_last_reply():
    ran: list[str] = []
    quiet = Quiet(settle_s=0.01, most_s=0.1, now=0.0)
    quiet.began()
    quiet.ended(1.0, _work(ran, "cold"))
    quiet.began()
    quiet.ended(1.005, AfterReply())  # a new contrast: nothing of its own, but not quiet yet
    assert quiet.due(1.012)[0] is None  # 7 ms after the last reply
    work, wait = quiet.due(1.015)
    assert work is not None and wait == 0.0
    work.run()
    assert ran == ["cold"] and quiet.due(2.0) == (None, None)


def test_work_runs_in_the_order_of_its_replies():
    ran: list[str] = []
    quiet = Quiet(settle_s=0.0, most_s=0.1, now=0.0)
    for t, name in enumerate(("cold", "xsize", "zoom")):
        quiet.began()
        quiet.ended(float(t), _work(ran, name))
    while (work := quiet.due(10.0)[0]) is not None:
        work.run()
    assert ran == ["cold", "xsize", "zoom"]


def test_a_job_without_deferred_work_queues_nothing():
    quiet = Quiet(settle_s=0.0, most_s=0.0, now=0.0)
    quiet.began()
    quiet.ended(1.0, None)  # parked (a follower's long-poll)
    quiet.began()
    quiet.ended(1.0, AfterReply())
    assert quiet.due(5.0) == (None, None) and quiet.busy == 0


def test_the_thread_runs_the_work_and_close_runs_what_is_left():
    done = threading.Event()
    ran: list[str] = []
    deferred = Deferred(settle_s=0.0, most_s=60.0)
    deferred.began()
    with AfterReply() as after:
        later(done.set)
    deferred.ended(after)
    assert done.wait(10.0)
    deferred.began()  # a job in hand: with most_s = 60 its work would wait a minute
    deferred.began()
    deferred.ended(_work(ran, "cold"))
    deferred.close()  # the worker stops: the write and the lock release happen now
    assert ran == ["cold"]
    deferred.ended(_work(ran, "late"))  # after close: at once, on the caller's thread
    assert ran == ["cold", "late"]
