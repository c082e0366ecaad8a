"""The worker's channel loop: read jobs from the procmgr, run them on a small thread pool.

The worker is untrusted by the procmgr and trusts nothing it receives either: each job is
re-validated. Replies go back on the same inherited socket, one per job, errors as a code word
and a sentence (never a traceback: that goes to our stderr, i.e. the procmgr's log).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyis_common import jobtypes, workerchannel
from pyis_common.errors import PyisError
from pyis_common.settings import ConfigError
from worker import bound, follow, followlean, headroom, jobs, settings
from worker.afterreply import AfterReply, Deferred
from worker.timings import Timings, since_ms

log = logging.getLogger("worker")


def prepare(spec: dict[str, Any], home: str) -> tuple[jobs.Pipeline, settings.Settings]:
    """The pipeline and its settings from a spawn order (ConfigError if it is wrong); also
    what a spare rehearses (worker/warmup.py)."""
    start = settings.at_start(spec)
    headroom.HEADROOM.configure(start.worker_headroom_bytes)
    pipeline = jobs.Pipeline(
        home=home,
        esaf=int(spec.get("esaf", 0)),
        quality=start.jpeg_quality,
        levels=start.levels,
        cache_bytes=start.worker_cache_bytes or None,
    )
    return pipeline, settings.Settings(pipeline, start)


def serve(fd: int, spec: dict[str, Any]) -> int:
    """Run until the procmgr closes the channel or says stop; the exit status."""
    chan = workerchannel.Channel(socket.socket(fileno=fd))
    try:
        pipeline, configured = prepare(spec, os.getcwd())
    except ConfigError as exc:
        print(f"worker {os.getpid()}: refused its spawn order: {exc}", file=sys.stderr)
        return 2
    deferred = Deferred()  # after-reply work waits until the worker is quiet
    with ThreadPoolExecutor(configured.current.worker_threads, thread_name_prefix="job") as pool:
        follows = follow.Follows(pipeline.home, followlean.Lean(pipeline).render, pool)
        chan.send(
            {
                "t": workerchannel.MSG_READY,
                "pid": os.getpid(),
                "uid": os.getuid(),
                "gid": os.getgid(),
                "groups": os.getgroups(),
            }
        )
        # a job thread before we read our config and first job (often in the channel already):
        # that job must not wait for one to start (it would start after the privilege drop anyway)
        pool.submit(int)
        while True:
            try:
                msg = chan.recv()
            except (OSError, workerchannel.WireError):
                msg = None
            if msg is None or msg[0].get("t") == workerchannel.MSG_STOP:
                break
            if msg[0].get("t") == workerchannel.MSG_JOB:
                deferred.began()
                headroom.job_began()
                pool.submit(_run, chan, pipeline, follows, deferred, msg[0], time.perf_counter())
            elif msg[0].get("t") == workerchannel.MSG_CONFIG:
                configured.apply(msg[0])
    deferred.close()  # the jobs are done: their tier-2 writes and lock releases, now
    return 0


def _progress(chan: workerchannel.Channel, rid: Any, line: str) -> None:
    try:
        chan.send({"t": workerchannel.MSG_PROGRESS, "id": rid, "line": line})
    except OSError:
        pass


def _run(
    chan: workerchannel.Channel,
    pipeline: jobs.Pipeline,
    follows: follow.Follows,
    deferred: Deferred,
    header: dict[str, Any],
    received: float,
) -> None:
    """:func:`_job`, then the heap's headroom is told the job is done (worker/headroom.py:
    it refills once no job is in hand), whatever the job did."""
    try:
        _job(chan, pipeline, follows, deferred, header, received)
    finally:
        headroom.job_ended()


def _job(
    chan: workerchannel.Channel,
    pipeline: jobs.Pipeline,
    follows: follow.Follows,
    deferred: Deferred,
    header: dict[str, Any],
    received: float,
) -> None:
    """One job on a pool thread; ``received`` is when the loop read it (the queue time). A
    ``newest`` long-poll is parked with the follower and answered when it has its frame. What
    the job left for after its reply goes to ``deferred``."""
    rid = header.get("id")
    clock = Timings()
    clock.add("queue", since_ms(received))
    job = header.get("job")
    answer = functools.partial(_answer, chan, pipeline, follows, rid, received, clock)
    after = AfterReply()  # sharing with tier 2 waits for the reply (worker/afterreply.py)
    try:
        with bound.bound(bound.parse(header.get("paths"))), after:  # the procmgr's paths
            if isinstance(job, dict) and job.get("type") in jobtypes.FOLLOWED_TYPES:
                follows.submit(job, clock, answer, bound.current())
                deferred.ended(None)  # parked: the follower answers it
                return
            outcome: jobs.Result | PyisError | None = pipeline.run(
                job, progress=lambda line: _progress(chan, rid, line), clock=clock
            )
    except PyisError as exc:
        outcome = exc
    except Exception:
        print(f"worker {os.getpid()}: job {rid} failed", file=sys.stderr)
        traceback.print_exc()
        outcome = None
    answer(outcome)
    deferred.ended(after)


def _answer(
    chan: workerchannel.Channel,
    pipeline: jobs.Pipeline,
    follows: follow.Follows,
    rid: Any,
    received: float,
    clock: Timings,
    outcome: jobs.Result | PyisError | None,
) -> None:
    """The one reply of a job: its result, its error, or (None) an internal failure."""
    if isinstance(outcome, jobs.Result):
        reply = {
            "t": workerchannel.MSG_REPLY,
            "id": rid,
            "ok": True,
            "job": outcome.job,
            "meta": outcome.meta,
            "tier": outcome.tier,
        }
        payloads = outcome.payloads
    elif isinstance(outcome, PyisError):
        reply = {"t": workerchannel.MSG_REPLY, "id": rid, "ok": False, "code": outcome.code}
        reply["error"] = str(outcome)
        if isinstance(outcome, bound.OutsideBound):
            reply["bound"] = True  # for the procmgr's audit line
        payloads = []
    else:
        reply = {
            "t": workerchannel.MSG_REPLY,
            "id": rid,
            "ok": False,
            "code": "internal",
            "error": "the worker failed on this image",
        }
        payloads = []
    reply["cache"] = pipeline.counters() | follows.counters() | headroom.counters()
    clock.add("worker", since_ms(received))
    reply["timings"] = clock.rounded()
    try:
        chan.send(reply, payloads)
    except OSError:
        pass  # the procmgr is gone; the main loop will see EOF and exit
