"""The procmgr loop: one reply for every request, whatever happens.

Shape of gunicorn's ``Arbiter.run`` and the zguide's ``mediate()``: wait with a timeout, handle
what came in, then always the housekeeping steps (``housekeep``). Each request in flight
carries a monotonic deadline; passing it answers ``timeout:``. A worker's reply after that is
dropped, so a client never gets two answers. Request routing is in procmgr/routing.py, worker
and zygote events in procmgr/workerevents.py, the steps after each turn in
procmgr/housekeeping.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import signal
import time
from collections.abc import Callable

import zmq

from procmgr.access import AccessChecker
from procmgr.accounting import Accounting
from procmgr.cacheacl import CacheAcl
from procmgr.housekeeping import Housekeeping
from procmgr.identity import Identities
from procmgr.metrics import Metrics
from procmgr.progress import ProgressChannel
from procmgr.proxylink import ProxyLink
from procmgr.routing import RequestRouting
from procmgr.sessionmemo import SessionMemo
from procmgr.sessions import SessionStore
from procmgr.sessionwatch import SessionWatch
from procmgr.statuspage import StatusPage
from procmgr.workerevents import EXIT_HALT, WorkerEvents
from procmgr.workers import Workers
from procmgr.zygoteclient import ZygoteClient
from pyis_common.config import ConfigError, ProcmgrConfig
from pyis_common.errors import Busy
from pyis_common.settings import NEW_WORKERS, RESTART, keys_reloaded_as
from pyis_common.signals import SignalQueue

__all__ = ["EXIT_HALT", "Manager", "listen_for_signals"]

log = logging.getLogger("procmgr")
POLL_MAX_MS = 1000  # loop at least once a second for deadlines and idle workers
SHUTDOWN_GRACE_S = 10.0  # in-flight requests get this long after SIGTERM
# declared in pyis_common/config.py: kept on a reload (sockets, keys, Redis connections), or
# applied to workers started after it (a running worker keeps its threads and memory limit)
RESTART_KEYS = keys_reloaded_as(ProcmgrConfig, "procmgr", RESTART)
NEW_WORKER_KEYS = keys_reloaded_as(ProcmgrConfig, "procmgr", NEW_WORKERS)


def listen_for_signals() -> SignalQueue:
    """The signals the loop acts on, recorded from now on."""
    return SignalQueue((signal.SIGTERM, signal.SIGINT, signal.SIGHUP))


class Manager(RequestRouting, WorkerEvents, Housekeeping):
    def __init__(
        self,
        cfg: ProcmgrConfig,
        zygote: ZygoteClient,
        load_config: Callable[[], ProcmgrConfig] | None = None,
    ) -> None:
        self.cfg = cfg
        self.load_config = load_config
        self.access = AccessChecker(cfg)
        self.identities = Identities()
        self.sessions = SessionStore(
            cfg.auth_redis, cfg.session_timeout_s, cfg.session_max_field_bytes
        )
        self.pending = {}
        self.session_memo = SessionMemo(cfg.session_memo_s)
        self.session_watch = SessionWatch(cfg.auth_redis, self.session_memo, cfg.session_timeout_s)
        self.progress_channel = ProgressChannel(self.sessions.publish)
        self.cacheacl = self._cache_acl(cfg)
        self.workers = Workers(cfg, zygote)
        self.zygote = zygote
        self.ctx = zmq.Context()
        self.link = ProxyLink(self.ctx, cfg)
        self.router = self.link.router
        self.inflight = {}
        self.ids = itertools.count(1)
        self.started = time.monotonic()
        self.stopping_since = None
        self.halt_reason = ""  # set on a fatal loss: close() then exits EXIT_HALT
        self.metrics = Metrics()
        self.accounting = Accounting(self.metrics)
        self.status_page = (
            StatusPage(self.ctx, self.metrics, cfg.metrics_address) if cfg.metrics_address else None
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
        poller = self._poller(signals)
        watched: set[int] = set()
        while not self._done():
            watched = self._watch_workers(poller, watched)
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
            if self.cacheacl is not None and self.cacheacl.fd in events:
                self.handle_cache_setups()
            if self.router in events:
                self.handle_requests()
            if self.status_page is not None:
                if self.status_page.sock in events:
                    self.status_page.answer(self.status_detail)
                if self.status_page.gauges_sock in events:
                    self.status_page.answer_gauges(self.gauges)
            self.housekeep(time.monotonic())
        return self.close()

    def _poller(self, signals: SignalQueue) -> zmq.Poller:
        """One poller for the life of the loop: what never changes is registered once."""
        poller = zmq.Poller()
        for source in (self.router, self.link.monitor.sock, signals.fd, self.zygote.fd):
            poller.register(source, zmq.POLLIN)
        poller.register(self.sessions.fd, zmq.POLLIN)
        if self.cacheacl is not None:
            poller.register(self.cacheacl.fd, zmq.POLLIN)
        if self.status_page is not None:
            poller.register(self.status_page.sock, zmq.POLLIN)
            poller.register(self.status_page.gauges_sock, zmq.POLLIN)
        return poller

    def _watch_workers(self, poller: zmq.Poller, watched: set[int]) -> set[int]:
        """Bring the poller's worker descriptors (channels, stderr pipes) up to date."""
        current = {*self.workers.by_fd, *self.workers.by_stderr}
        for fd in watched - current:
            poller.unregister(fd)
        for fd in current - watched:
            poller.register(fd, zmq.POLLIN)
        return current

    def _poll_ms(self) -> int:
        now = time.monotonic()
        deadlines = [f.deadline for f in self.inflight.values()]
        deadlines += [p.deadline for p in self.pending.values()]
        soonest = min([*deadlines, now + self.link.beat_in_s(now)]) - now
        return max(1, min(POLL_MAX_MS, int(soonest * 1000) + 1))

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
                self.identities.clear()
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
        new = dataclasses.replace(new, **kept)
        changed = [
            f.name
            for f in dataclasses.fields(new)
            if getattr(new, f.name) != getattr(self.cfg, f.name)
        ]
        for key in changed:
            if key in NEW_WORKER_KEYS:
                log.info("SIGHUP: procmgr.%s applies to workers started from now on", key)
        self.apply_config(new)
        log.info("SIGHUP: configuration reloaded; changed: %s", ", ".join(changed) or "nothing")

    def apply_config(self, cfg: ProcmgrConfig) -> None:
        """Give every holder of a reloadable key its new value: the loop's parts, the session
        memo, the cache ACL's TTL, the proxy link's request cap, and the running workers."""
        self.cfg = self.workers.cfg = self.access.cfg = cfg
        self.session_memo.hold_s = cfg.session_memo_s
        self.identities.clear()
        if self.cacheacl is not None:
            self.cacheacl.ttl_s = cfg.cache_ttl_s
        self.link.limit_messages(cfg.max_message_bytes)
        self.reconfigure_workers()

    def close(self) -> int:
        for p in self.pending.values():
            self.refuse(p.envelope, p.req, p.t0, Busy("the image server is shutting down"))
        self.pending.clear()
        self.session_watch.stop()
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
