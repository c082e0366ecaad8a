"""What the parts of the procmgr loop share: its state, and the one way a request is answered.

The loop (procmgr/manager.py), request routing (procmgr/routing.py) and worker events
(procmgr/workerevents.py) are one object, as gunicorn's ``Arbiter`` is; each file holds one
part of it, and this base declares what they all read.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import zmq

from procmgr.access import AccessChecker
from procmgr.accounting import Accounting
from procmgr.cacheacl import CacheAcl
from procmgr.flights import InFlight, Pending
from procmgr.identity import Identities
from procmgr.metrics import Gauges, Metrics
from procmgr.progress import ProgressChannel
from procmgr.proxylink import ProxyLink
from procmgr.sessionmemo import SessionMemo
from procmgr.sessions import SessionStore
from procmgr.sessionwatch import SessionWatch
from procmgr.statuspage import StatusPage
from procmgr.workers import Worker, Workers
from procmgr.zygoteclient import ZygoteClient
from pyis_common.config import ProcmgrConfig
from pyis_common.errors import PyisError, wire_text
from pyis_common.jobtypes import LONG_POLL_TYPES
from pyis_common.request import Request
from pyis_common.workersettings import for_workers

log = logging.getLogger("procmgr")


class ManagerBase:
    cfg: ProcmgrConfig
    access: AccessChecker
    identities: Identities
    sessions: SessionStore
    session_memo: SessionMemo
    session_watch: SessionWatch
    progress_channel: ProgressChannel
    cacheacl: CacheAcl | None
    workers: Workers
    zygote: ZygoteClient
    ctx: zmq.Context
    link: ProxyLink
    router: zmq.Socket
    pending: dict[int, Pending]
    inflight: dict[int, InFlight]
    ids: itertools.count[int]
    started: float
    stopping_since: float | None
    halt_reason: str
    metrics: Metrics
    accounting: Accounting
    status_page: StatusPage | None

    def shutdown(self, why: str) -> None:
        """The one way out: stop taking work, let in-flight requests finish, then close."""
        if self.stopping_since is None:
            log.info("shutting down (%s); %d requests in flight", why, len(self.inflight))
            self.stopping_since = time.monotonic()

    def slots_used(self, long_polls: bool) -> int:
        """Requests in flight of one kind: long-polls (``newest``) wait for a file, not for
        the server, so an idle one never holds a slot another user's image needs; they have
        a pool of their own, and count against their session's own share. Requests still
        waiting for their session lookup count too."""
        reqs = [f.req for f in self.inflight.values()] + [p.req for p in self.pending.values()]
        return sum((r.type in LONG_POLL_TYPES) == long_polls for r in reqs)

    def gauges(self) -> Gauges:
        """The gauges now: for a status answer and a scrape (never per loop turn)."""
        return self.metrics.current(
            len(self.workers.by_key), len(self.inflight), self.workers.cache_totals()
        )

    def reply(self, envelope: list[bytes], frames: list[bytes]) -> None:
        try:
            self.router.send_multipart(envelope + frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("could not send a reply: %s", exc)

    def refuse(self, envelope: list[bytes], req: Request | None, t0: float, exc: Exception) -> None:
        """The one error reply for a request that failed before reaching a worker."""
        if isinstance(exc, PyisError):
            self.log_request(envelope, req, exc.code, t0, why=str(exc))
            self.reply(envelope, [wire_text(exc.code, str(exc))])
            return
        log.error("request failed", exc_info=exc)
        self.log_request(envelope, req, "internal", t0)
        self.reply(envelope, [wire_text("internal", "the image server failed")])

    def answer_error(self, flight: InFlight, code: str, sentence: str) -> None:
        self.log_request(flight.envelope, flight.req, code, flight.t0, why=sentence)
        self.reply(flight.envelope, [wire_text(code, sentence)])

    def log_request(
        self, envelope: list[bytes], req: Request | None, code: str, t0: float, **detail: str
    ) -> None:
        """Account for a finished request (before its reply leaves, or just after it for a
        worker's answer: procmgr/accounting.py; ``detail``: ``why``, ``tier``); a long job's
        progress subscribers hear that it is done."""
        if req is not None and req.job_type.publishes_progress:
            self.progress_channel.publish(req, {"done": True, "outcome": code})
        self.accounting.record(envelope, req, code, t0, **detail)

    def worker_lost(self, worker: Worker, why: str) -> None:
        """A worker that crashed, hung or lied: killed, and each of its requests answered."""
        log.warning("%s lost: %s", worker.name, why)
        lost = self.workers.remove(worker, lost=True)
        sentence = (
            "the worker for this session stopped unexpectedly"
            if worker.ready
            else "could not start a worker for this session"
        )
        for rid in lost:
            flight = self.inflight.pop(rid, None)
            if flight is not None:
                self.answer_error(flight, "internal", sentence)

    def configure(self, worker: Worker) -> None:
        """Send a new worker its config and queued jobs once its ESAF's cache user is made (or
        could not be): now if it is, else when ``cacheacl.fd`` says so (handle_cache_setups).
        Never waits on the loop; the worker's ready plays no part (its channel holds them)."""
        if self.cacheacl is not None and self.cacheacl.ready(worker.ident.esaf) is None:
            return
        try:
            self.workers.configure(worker, self.worker_config(worker))
        except OSError:
            self.worker_lost(worker, "cannot send to it")

    def worker_config(self, worker: Worker) -> dict[str, Any]:
        """Settings sent over the worker's private channel, never through the zygote: the
        worker keys (again, so a reload reaches running workers) and the cache credential."""
        config: dict[str, Any] = {"settings": for_workers(self.cfg)}
        esaf = worker.ident.esaf
        credential = self.cacheacl.credential(esaf, wait_s=0) if self.cacheacl else None
        if credential:
            config["cache"] = credential
        return config
