"""Request routing in the procmgr loop: frame checks, the session lookup, access, admission,
and the hand-off to the (user, ESAF)'s worker. Every path ends in exactly one reply."""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from procmgr import admission, identity
from procmgr.flights import InFlight, Pending
from procmgr.frames import split_envelope
from procmgr.managerbase import ManagerBase
from procmgr.sessions import Outcome, Session
from pyis_common import framelimits, strictjson
from pyis_common.errors import BadRequest, Busy, PyisError
from pyis_common.jobtypes import LONG_POLL_TYPES, AnsweredBy, Deadline
from pyis_common.request import Request, parse_frame

log = logging.getLogger("procmgr")
LOOKUP_GRACE_S = 0.2  # the lookup thread reports its own deadline first; this is the backstop
REQUEST_BURST = 100  # requests read in one turn, then the workers are looked at again


class RequestRouting(ManagerBase):
    def handle_requests(self) -> None:
        for _ in range(REQUEST_BURST):
            try:
                frames = self.link.receive()
            except zmq.Again:
                return
            if frames is not None:
                self.handle_request(frames)

    def handle_request(self, frames: list[bytes]) -> None:
        t0 = time.monotonic()
        envelope, body = split_envelope(frames)
        if envelope is None:
            log.warning("dropped a message with no route (%d frames)", len(frames))
            return
        req: Request | None = None
        try:
            if self.stopping_since is not None:
                raise Busy("the image server is shutting down; try again")
            if body is None:
                raise BadRequest(framelimits.NO_DELIMITER)
            if len(body) != 1:
                raise BadRequest(f"a request is one frame of JSON, not {len(body)}")
            if len(body[0]) > self.cfg.max_message_bytes:
                raise BadRequest(f"request is larger than {self.cfg.max_message_bytes} bytes")
            req = parse_frame(body[0])
            if req.job_type.answered_by is AnsweredBy.PROCMGR:  # status
                self.log_request(envelope, req, "ok", t0)
                self.reply(
                    envelope, [b"", strictjson.dumps(req.echo()), strictjson.dumps(self.status())]
                )
                return
            self.look_up(envelope, req, t0)
        except Exception as exc:
            self.refuse(envelope, req, t0, exc)

    def look_up(self, envelope: list[bytes], req: Request, t0: float) -> None:
        """Ask for the session off the loop; ``handle_sessions`` continues with ``route``."""
        admission.check_server(self.cfg, self.slots_used(req.type in LONG_POLL_TYPES))
        t_lookup = time.monotonic()
        if self.session_watch.quiet():  # every change to a session hash so far is handled
            remembered = self.session_memo.get(req.pid)
            if remembered is not None:  # read within session_memo_s: no round trip, no thread
                self.route(envelope, req, t0, remembered, t_lookup)
                return
        lid = next(self.ids)
        self.sessions.lookup(lid, req.pid)
        deadline = t_lookup + self.cfg.session_timeout_s + LOOKUP_GRACE_S
        generation = self.session_memo.generation
        self.pending[lid] = Pending(envelope, req, t0, deadline, t_lookup, generation)

    def handle_sessions(self) -> None:
        for lid, outcome in self.sessions.results():
            p = self.pending.pop(lid, None)
            if p is None:
                continue  # answered at its deadline already
            if isinstance(outcome, Session):
                if self.session_memo.hold_s > 0:
                    self.session_watch.start()  # the store answers: watch it from now on
                self.session_memo.put(p.req.pid, outcome, since=p.generation)
            try:
                self.route(p.envelope, p.req, p.t0, outcome, p.t_lookup)
            except Exception as exc:
                self.refuse(p.envelope, p.req, p.t0, exc)

    def route(
        self, envelope: list[bytes], req: Request, t0: float, session: Outcome, t_lookup: float
    ) -> None:
        """Continue a request once its session is read (``t_lookup``: when it was asked)."""
        if isinstance(session, PyisError):
            raise session
        grant = self.access.check(req, session)
        ident = self.identities.resolve(self.cfg, grant.user, req.esaf)
        access_ms = (time.monotonic() - t_lookup) * 1000  # lookup (off the loop) and check
        if self.stopping_since is not None:
            raise Busy("the image server is shutting down; try again")
        admission.check_session_share(self.cfg, self.session_job_types(ident), req.type)
        admission.check_server(self.cfg, self.slots_used(req.type in LONG_POLL_TYPES))
        worker = self.workers.get(ident)
        if self.cacheacl is not None and not worker.configured:
            self.cacheacl.prepare(ident.esaf)  # its cache user is made while it forks
        rid = next(self.ids)
        deadline = t0 + self.time_limit_s(req)
        self.inflight[rid] = InFlight(rid, envelope, req, worker, deadline, t0, access_ms, grant)
        try:
            self.workers.submit(worker, rid, req.to_worker(), grant.paths)
        except OSError:
            self.worker_lost(worker, "cannot send to it")
            return
        if not worker.configured:
            self.configure(worker)

    def session_job_types(self, ident: identity.Identity) -> list[str]:
        """The types of the requests this (user, ESAF)'s worker holds now."""
        worker = self.workers.by_key.get(self.workers.key_of(ident))
        rids = worker.inflight if worker is not None else ()
        return [self.inflight[rid].req.type for rid in rids if rid in self.inflight]

    def time_limit_s(self, req: Request) -> float:
        """The request's deadline: a long-poll's wait comes on top of the usual budget."""
        deadline = req.job_type.deadline
        if deadline is Deadline.LONG_JOB:
            return self.cfg.index_timeout_s + 5
        if deadline is Deadline.LONG_POLL:
            return req.wait_s + self.cfg.request_timeout_s
        return self.cfg.request_timeout_s

    def status(self) -> dict[str, Any]:
        """The public answer (no access object needed): counts, never who or which pid. The
        counts are the metrics' own (procmgr/metrics.py), brought up to this moment."""
        return {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "worker_start_ms": list(self.workers.start_ms)[-10:],
        } | self.metrics.snapshot(self.gauges())

    def status_detail(self) -> dict[str, Any]:
        """For the loopback status page only: each worker's uid, ESAF, pid and counters."""
        return self.status() | {"workers": self.workers.describe()}
