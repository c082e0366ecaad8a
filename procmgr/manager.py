"""The procmgr loop: one reply for every request, whatever happens.

Shape of gunicorn's ``Arbiter.run`` and the zguide's ``mediate()``: wait with a timeout, handle
what came in, then always ``expire_requests()`` and ``retire_workers()``. Each request in flight
carries a monotonic deadline; passing it answers ``timeout:``. A worker's reply after that is
dropped, so a client never gets two answers.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from authsign.compat import Access
from procmgr import admission, audit, identity
from procmgr.access import AccessChecker
from procmgr.accounting import Accounting
from procmgr.cacheacl import CacheAcl
from procmgr.frames import reply_frames, split_envelope
from procmgr.metrics import Metrics
from procmgr.progress import ProgressChannel
from procmgr.proxylink import ProxyLink
from procmgr.sessionmemo import SessionMemo
from procmgr.sessions import Outcome, Session, SessionStore
from procmgr.statuspage import StatusPage
from procmgr.workers import Worker, Workers
from procmgr.zygoteclient import ZygoteClient
from pyis_common import framelimits, strictjson, workerchannel
from pyis_common.config import ConfigError, ProcmgrConfig
from pyis_common.errors import BadRequest, Busy, PyisError, known_code, wire_text
from pyis_common.jobtypes import LONG_POLL_TYPES, AnsweredBy, Deadline
from pyis_common.protocol import MAX_PROGRESS_LINE
from pyis_common.request import Request, parse_frame
from pyis_common.signals import SignalQueue
from pyis_common.workerstats import clean_counters

log = logging.getLogger("procmgr")
POLL_MAX_MS = 1000  # loop at least once a second for deadlines and idle workers
LOOKUP_GRACE_S = 0.2  # the lookup thread reports its own deadline first; this is the backstop
EXIT_HALT = 69  # EX_UNAVAILABLE: we cannot serve any more (the zygote died); restart us
SHUTDOWN_GRACE_S = 10.0  # in-flight requests get this long after SIGTERM
# bound when the procmgr starts: sockets, keys, Redis connections, the metrics server
RESTART_KEYS = (
    "curve_secret",
    "proxy_curve_public",
    "proxies",
    "auth_redis",
    "compat_enabled",
    "compat_pubkey",
    "trust_root",
    "trust_certs",
    "trust_crl",
    "cache_redis",
    "cache_redis_user",
    "cache_redis_password_file",
    "session_timeout_s",
    "session_max_field_bytes",
    "metrics_address",
    "dev_user",
)


@dataclass
class Pending:
    """A request waiting for its session lookup (on a thread; the loop carries on)."""

    envelope: list[bytes]
    req: Request
    t0: float
    deadline: float
    t_lookup: float  # when the lookup was asked: the start of timings_ms["access"]


@dataclass
class InFlight:
    rid: int
    envelope: list[bytes]
    req: Request
    worker: Worker
    deadline: float
    t0: float
    access_ms: float = 0.0  # session lookup, access check and identity, for timings_ms
    grant: Access | None = None  # what the access object granted (a path-bound token's audit)


def listen_for_signals() -> SignalQueue:
    """The signals the loop acts on, recorded from now on."""
    return SignalQueue((signal.SIGTERM, signal.SIGINT, signal.SIGHUP))


class Manager:
    def __init__(
        self,
        cfg: ProcmgrConfig,
        zygote: ZygoteClient,
        load_config: Callable[[], ProcmgrConfig] | None = None,
    ) -> None:
        self.cfg = cfg
        self.load_config = load_config
        self.access = AccessChecker(cfg)
        self.sessions = SessionStore(
            cfg.auth_redis, cfg.session_timeout_s, cfg.session_max_field_bytes
        )
        self.pending: dict[int, Pending] = {}
        self.session_memo = SessionMemo(cfg.session_memo_s)
        self.progress_channel = ProgressChannel(self.sessions.publish)
        self.cacheacl = self._cache_acl(cfg)
        self.workers = Workers(cfg, zygote)
        self.zygote = zygote
        self.ctx = zmq.Context()
        self.link = ProxyLink(self.ctx, cfg)
        self.router = self.link.router
        self.inflight: dict[int, InFlight] = {}
        self.ids = itertools.count(1)
        self.started = time.monotonic()
        self.stopping_since: float | None = None
        self.halt_reason = ""  # set on a fatal loss: close() then exits EXIT_HALT
        self.metrics = Metrics()
        self.accounting = Accounting(self.metrics)
        self.status_page = (
            StatusPage(self.ctx, self.metrics.registry, cfg.metrics_address)
            if cfg.metrics_address
            else None
        )
        self.metrics_address = self.status_page.address if self.status_page else ""

    @staticmethod
    def _cache_acl(cfg: ProcmgrConfig) -> CacheAcl | None:
        """The cache Redis secured as ours, or a refusal to start (CacheOpen) if it stays open."""
        if not cfg.cache_redis:
            return None
        acl = CacheAcl(
            cfg.cache_redis, cfg.cache_ttl_s, cfg.cache_redis_user, cfg.cache_redis_password_file
        )
        acl.start()
        return acl

    # -- the loop --------------------------------------------------------------------------
    def run(self, signals: SignalQueue | None = None) -> int:
        """Serve until shutdown; ``signals`` is passed in when the caller had to listen before
        announcing READY (a SIGHUP right after READY must reload, not kill the default way)."""
        signals = signals or listen_for_signals()
        while not self._done():
            poller = zmq.Poller()
            poller.register(self.router, zmq.POLLIN)
            poller.register(self.link.monitor.sock, zmq.POLLIN)
            poller.register(signals.fd, zmq.POLLIN)
            poller.register(self.zygote.fd, zmq.POLLIN)
            poller.register(self.sessions.fd, zmq.POLLIN)
            for fd in (*self.workers.by_fd, *self.workers.by_stderr):
                poller.register(fd, zmq.POLLIN)
            if self.status_page is not None:
                poller.register(self.status_page.sock, zmq.POLLIN)
            events = dict(poller.poll(self._poll_ms()))
            if signals.fd in events:
                self.handle_signals(signals.drain())
            if self.zygote.fd in events:
                self.handle_zygote()
            for fd, worker in list(self.workers.by_fd.items()):
                if fd in events:
                    self.handle_worker(worker)
            for fd, worker in list(self.workers.by_stderr.items()):
                if fd in events:
                    self.workers.read_stderr(worker)
            if self.link.monitor.sock in events:
                self.link.watch()
            if self.sessions.fd in events:
                self.handle_sessions()
            if self.router in events:
                self.handle_requests()
            if self.status_page is not None and self.status_page.sock in events:
                self.status_page.answer(self.status_detail)
            self.expire_requests()
            self.retire_workers()
            self.link.rearm(time.monotonic())
            self.link.beat(time.monotonic(), self.capacity())
            self.refresh_metrics()
        return self.close()

    def _poll_ms(self) -> int:
        now = time.monotonic()
        deadlines = [f.deadline for f in self.inflight.values()]
        deadlines += [p.deadline for p in self.pending.values()]
        soonest = min([*deadlines, now + self.link.beat_in_s(now)]) - now
        return max(1, min(POLL_MAX_MS, int(soonest * 1000) + 1))

    def capacity(self) -> int:
        """What each proxy may have in flight here: nothing once we are shutting down. The
        long-polls held now come on top (announced within a heartbeat), so they never use up
        the credit other users' images need."""
        if self.stopping_since is not None:
            return 0
        return self.cfg.max_in_flight + self.slots_used(True)

    def _done(self) -> bool:
        if self.stopping_since is None:
            return False
        idle = not self.inflight and not self.pending
        return idle or time.monotonic() - self.stopping_since > SHUTDOWN_GRACE_S

    def handle_signals(self, signums: list[int]) -> None:
        for signum in signums:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.shutdown(signal.Signals(signum).name)
            elif signum == signal.SIGHUP:
                log.info("SIGHUP: reloading the configuration, signing certificates and CRL")
                self.reload_config()
                self.session_memo.clear()
                self.session_memo.hold_s = self.cfg.session_memo_s
                self.access.reload()
                if self.cacheacl is not None:
                    self.cacheacl.ensure(force=True)

    def reload_config(self) -> None:
        """Apply a changed config file; keys bound at start (sockets, keys, Redis URLs) keep
        their value until a restart, and a broken file changes nothing."""
        if self.load_config is None:
            return
        try:
            new = self.load_config()
        except ConfigError as exc:
            log.error("SIGHUP: config not reloaded: %s", exc)
            return
        kept = {
            k: getattr(self.cfg, k) for k in RESTART_KEYS if getattr(new, k) != getattr(self.cfg, k)
        }
        for key in kept:
            log.warning("SIGHUP: changing procmgr.%s needs a restart; kept the old value", key)
        self.cfg = dataclasses.replace(new, **kept)
        self.workers.cfg = self.access.cfg = self.cfg
        log.info("SIGHUP: configuration reloaded")

    def shutdown(self, why: str) -> None:
        """The one way out: stop taking work, let in-flight requests finish, then close."""
        if self.stopping_since is None:
            log.info("shutting down (%s); %d requests in flight", why, len(self.inflight))
            self.stopping_since = time.monotonic()

    # -- requests --------------------------------------------------------------------------
    def handle_requests(self) -> None:
        for _ in range(100):  # a burst, then look at the workers again
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

    def refuse(self, envelope: list[bytes], req: Request | None, t0: float, exc: Exception) -> None:
        """The one error reply for a request that failed before reaching a worker."""
        if isinstance(exc, PyisError):
            self.log_request(envelope, req, exc.code, t0, str(exc))
            self.reply(envelope, [wire_text(exc.code, str(exc))])
            return
        log.error("request failed", exc_info=exc)
        self.log_request(envelope, req, "internal", t0)
        self.reply(envelope, [wire_text("internal", "the image server failed")])

    def look_up(self, envelope: list[bytes], req: Request, t0: float) -> None:
        """Ask for the session off the loop; ``handle_sessions`` continues with ``route``."""
        admission.check_server(self.cfg, self.slots_used(req.type in LONG_POLL_TYPES))
        t_lookup = time.monotonic()
        remembered = self.session_memo.get(req.pid)
        if remembered is not None:  # read within session_memo_s: no round trip, no thread
            self.route(envelope, req, t0, remembered, t_lookup)
            return
        lid = next(self.ids)
        self.sessions.lookup(lid, req.pid)
        deadline = t_lookup + self.cfg.session_timeout_s + LOOKUP_GRACE_S
        self.pending[lid] = Pending(envelope, req, t0, deadline, t_lookup)

    def handle_sessions(self) -> None:
        for lid, outcome in self.sessions.results():
            p = self.pending.pop(lid, None)
            if p is None:
                continue  # answered at its deadline already
            if isinstance(outcome, Session):
                self.session_memo.put(p.req.pid, outcome)
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
        ident = identity.resolve(self.cfg, grant.user, req.esaf)
        access_ms = (time.monotonic() - t_lookup) * 1000  # lookup (off the loop) and check
        if self.stopping_since is not None:
            raise Busy("the image server is shutting down; try again")
        admission.check_session_share(self.cfg, self.session_job_types(ident), req.type)
        admission.check_server(self.cfg, self.slots_used(req.type in LONG_POLL_TYPES))
        worker = self.workers.get(ident)
        rid = next(self.ids)
        deadline = t0 + self.time_limit_s(req)
        self.inflight[rid] = InFlight(rid, envelope, req, worker, deadline, t0, access_ms, grant)
        try:
            self.workers.submit(worker, rid, req.to_worker(), grant.paths)
        except OSError:
            self.worker_lost(worker, "cannot send to it")

    def session_job_types(self, ident: identity.Identity) -> list[str]:
        """The types of the requests this (user, ESAF)'s worker holds now."""
        worker = self.workers.by_key.get(self.workers.key_of(ident))
        rids = worker.inflight if worker is not None else ()
        return [self.inflight[rid].req.type for rid in rids if rid in self.inflight]

    def slots_used(self, long_polls: bool) -> int:
        """Requests in flight of one kind: long-polls (``newest``) wait for a file, not for
        the server, so an idle one never holds a slot another user's image needs; they have
        a pool of their own, and count against their session's own share. Requests still
        waiting for their session lookup count too."""
        reqs = [f.req for f in self.inflight.values()] + [p.req for p in self.pending.values()]
        return sum((r.type in LONG_POLL_TYPES) == long_polls for r in reqs)

    def time_limit_s(self, req: Request) -> float:
        """The request's deadline: a long-poll's wait comes on top of the usual budget."""
        deadline = req.job_type.deadline
        if deadline is Deadline.LONG_JOB:
            return self.cfg.index_timeout_s + 5
        if deadline is Deadline.LONG_POLL:
            return req.wait_s + self.cfg.request_timeout_s
        return self.cfg.request_timeout_s

    def reply(self, envelope: list[bytes], frames: list[bytes]) -> None:
        try:
            self.router.send_multipart(envelope + frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("could not send a reply: %s", exc)

    def answer_error(self, flight: InFlight, code: str, sentence: str) -> None:
        self.log_request(flight.envelope, flight.req, code, flight.t0, sentence)
        self.reply(flight.envelope, [wire_text(code, sentence)])

    # -- workers ---------------------------------------------------------------------------
    def handle_worker(self, worker: Worker) -> None:
        try:
            messages = self.workers.receive(worker)
        except (EOFError, OSError, workerchannel.WireError) as exc:
            self.worker_lost(worker, str(exc))
            return
        for header, payloads in messages:
            kind = header.get("t")
            if kind == workerchannel.MSG_READY and not worker.ready:
                try:
                    self.workers.on_ready(worker, header, self.worker_config(worker))
                except OSError:
                    self.worker_lost(worker, "cannot send to it")
                    return
            elif kind == workerchannel.MSG_REPLY:
                self.worker_reply(worker, header, payloads)
            elif kind == workerchannel.MSG_PROGRESS:
                self.progress(worker, header)
            else:
                log.warning("%s sent an unexpected %r message", worker.name, str(kind)[:20])

    def worker_reply(self, worker: Worker, header: dict[str, Any], payloads: list[bytes]) -> None:
        rid = header.get("id")
        flight = self.inflight.get(rid) if isinstance(rid, int) else None
        if flight is None or flight.worker is not worker:
            log.info("%s answered request %r late or twice; dropped", worker.name, rid)
            return
        del self.inflight[flight.rid]
        worker.inflight.discard(flight.rid)
        worker.served += 1
        cache = clean_counters(header.get("cache"))
        if cache is not None:
            worker.cache = cache
        if header.get("ok") is not True:
            code = known_code(header.get("code"))  # before any accounting sees it
            sentence = str(header.get("error", ""))[:500]
            grant = flight.grant
            if grant is not None and grant.paths is not None and header.get("bound") is True:
                audit.refused(grant, flight.req, sentence)
            self.answer_error(flight, code, sentence)
            return
        try:
            seen = {"access": flight.access_ms, "total": (time.monotonic() - flight.t0) * 1000}
            frames = reply_frames(flight.req, header, payloads, seen)
        except (TypeError, ValueError):
            self.answer_error(flight, "internal", "the worker sent a malformed reply")
            return
        tier = header.get("tier")
        self.log_request(
            flight.envelope, flight.req, "ok", flight.t0, tier=tier if isinstance(tier, str) else ""
        )
        self.reply(flight.envelope, [b"", *frames])

    def progress(self, worker: Worker, header: dict[str, Any]) -> None:
        rid, line = header.get("id"), header.get("line")
        flight = self.inflight.get(rid) if isinstance(rid, int) else None
        if flight is None or flight.worker is not worker or not isinstance(line, str):
            return
        self.progress_channel.publish(
            flight.req, {"progress": line[:MAX_PROGRESS_LINE], "done": False}
        )

    def worker_config(self, worker: Worker) -> dict[str, Any]:
        """Settings sent over the worker's private channel, never through the zygote."""
        config: dict[str, Any] = {
            "index": {
                "command": list(self.cfg.index_command),
                "timeout_s": self.cfg.index_timeout_s,
            },
        }
        credential = self.cacheacl.credential(worker.ident.esaf) if self.cacheacl else None
        if credential:
            config["cache"] = credential
        return config

    def worker_lost(self, worker: Worker, why: str) -> None:
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

    def handle_zygote(self) -> None:
        try:
            messages = self.zygote.read()
        except (EOFError, OSError, workerchannel.WireError):
            self.halt("the zygote died; no new workers can start")
            return
        for header in messages:
            if header.get("t") == workerchannel.MSG_SPAWNED:
                failed = self.workers.on_spawned(header)
                if failed is not None:
                    self.spawn_failed(failed, str(header.get("error", "no reason given"))[:200])
            elif header.get("t") == workerchannel.MSG_EXITED:
                self.workers.on_exited(header)

    def spawn_failed(self, worker: Worker, why: str) -> None:
        """The zygote could not fork (the task limit, no memory): the server stays up, the
        session is told ``busy:`` now and backed off, not left waiting for a deadline."""
        log.warning("%s could not be started: %s; backing off", worker.name, why)
        for rid in self.workers.remove(worker):
            flight = self.inflight.pop(rid, None)
            if flight is not None:
                self.answer_error(
                    flight, "busy", "the image server cannot start a worker now; try again"
                )

    def halt(self, why: str) -> None:
        """gunicorn's HaltServer: a loss we cannot repair ourselves ends the process with a
        non-zero status, so that the service manager (Restart=on-failure) starts us again."""
        if not self.halt_reason:
            log.error("%s: exiting with status %d to be restarted", why, EXIT_HALT)
            self.halt_reason = why
        self.shutdown(why)

    # -- housekeeping ----------------------------------------------------------------------
    def expire_lookups(self, now: float) -> None:
        """A lookup its thread did not report in time (all threads hung, a DNS stall): busy:,
        and the store counts as failed (the breaker opens)."""
        for lid in [lid for lid, p in self.pending.items() if p.deadline <= now]:
            p = self.pending.pop(lid)
            why = f"no answer within {self.cfg.session_timeout_s} s"
            self.sessions.failed(why)
            sentence = f"the access object store is unavailable ({why}); try again"
            self.refuse(p.envelope, p.req, p.t0, Busy(sentence))

    def expire_requests(self) -> None:
        """Answer ``timeout:`` past the deadline; a worker silent for a whole deadline is hung
        (stopped, deadlocked, swapping) and is replaced, so the session recovers by itself."""
        now = time.monotonic()
        self.expire_lookups(now)
        for flight in [f for f in self.inflight.values() if f.deadline <= now]:
            del self.inflight[flight.rid]
            flight.worker.inflight.discard(flight.rid)
            self.answer_error(flight, "timeout", "the image server did not answer in time")
            worker = flight.worker
            silent = now - max(worker.last_heard, worker.started)
            if silent >= self.cfg.request_timeout_s and worker in self.workers.all():
                self.worker_lost(worker, f"silent for {silent:.1f} s")

    def refresh_metrics(self) -> None:
        self.metrics.refresh(
            len(self.workers.by_key), len(self.inflight), self.workers.cache_totals
        )

    def retire_workers(self) -> None:
        if self.cacheacl is not None:
            self.cacheacl.ensure()  # after a Redis restart, the ESAF users come back
        for worker, why in self.workers.stale(time.monotonic()):
            if why == "idle":
                log.info("%s idle; stopping it", worker.name)
                self.workers.remove(worker)
            else:
                self.worker_lost(worker, why)

    def status(self) -> dict[str, Any]:
        """The public answer (no access object needed): counts, never who or which pid."""
        return {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "workers": len(self.workers.by_key),
            "in_flight": len(self.inflight),
            "worker_start_ms": list(self.workers.start_ms)[-10:],
            "cache": self.workers.cache_totals(),
        } | self.accounting.snapshot()

    def status_detail(self) -> dict[str, Any]:
        """For the loopback status page only: each worker's uid, ESAF, pid and counters."""
        return self.status() | {"workers": self.workers.describe()}

    def log_request(
        self,
        envelope: list[bytes],
        req: Request | None,
        code: str,
        t0: float,
        why: str = "",
        tier: str = "",
    ) -> None:
        """Account for a finished request (before its reply leaves); a long job's progress
        subscribers hear that it is done."""
        if req is not None and req.job_type.publishes_progress:
            self.progress_channel.publish(req, {"done": True, "outcome": code})
        self.accounting.record(envelope, req, code, t0, why, tier)

    def close(self) -> int:
        for p in self.pending.values():
            self.refuse(p.envelope, p.req, p.t0, Busy("the image server is shutting down"))
        self.pending.clear()
        self.sessions.close()
        for flight in list(self.inflight.values()):
            self.answer_error(flight, "timeout", "the image server shut down before answering")
        self.inflight.clear()
        for worker in self.workers.all():
            self.workers.remove(worker)
        code = self.zygote.stop(timeout_s=15.0)
        log.info("zygote exited with %s; bye", code)
        if self.status_page is not None:
            self.status_page.close()
        self.link.close()
        self.ctx.term()
        return EXIT_HALT if self.halt_reason else 0
