"""Worker and zygote events in the procmgr loop: replies, progress, a worker ready, lost or
never started, and the zygote's reports. A reply is passed on only for a request in flight
at that worker: a late or repeated one is dropped, so a client never gets two answers."""

from __future__ import annotations

import logging
import time
from typing import Any

from procmgr import audit
from procmgr.frames import reply_frames
from procmgr.managerbase import ManagerBase
from procmgr.workers import Worker
from pyis_common import workerchannel
from pyis_common.errors import known_code
from pyis_common.protocol import MAX_PROGRESS_LINE
from pyis_common.workerstats import clean_counters

log = logging.getLogger("procmgr")
EXIT_HALT = 69  # EX_UNAVAILABLE: we cannot serve any more (the zygote died); restart us


class WorkerEvents(ManagerBase):
    def handle_worker(self, worker: Worker) -> None:
        try:
            messages = self.workers.receive(worker)
        except (EOFError, OSError, workerchannel.WireError) as exc:
            self.worker_lost(worker, str(exc))
            return
        for header, payloads in messages:
            kind = header.get("t")
            if kind == workerchannel.MSG_READY and not worker.ready:
                self.workers.on_ready(worker, header)
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
        self.reply(flight.envelope, [b"", *frames])
        tier = header.get("tier")  # the line after the reply: it need not wait for our write
        self.log_request(
            flight.envelope, flight.req, "ok", flight.t0, tier=tier if isinstance(tier, str) else ""
        )

    def progress(self, worker: Worker, header: dict[str, Any]) -> None:
        rid, line = header.get("id"), header.get("line")
        flight = self.inflight.get(rid) if isinstance(rid, int) else None
        if flight is None or flight.worker is not worker or not isinstance(line, str):
            return
        self.progress_channel.publish(
            flight.req, {"progress": line[:MAX_PROGRESS_LINE], "done": False}
        )

    def handle_cache_setups(self) -> None:
        """An ESAF's cache user is made: its new workers get their config and jobs now."""
        if self.cacheacl is None or not self.cacheacl.setups_done():
            return
        for worker in [w for w in self.workers.all() if not w.configured]:
            self.configure(worker)

    def reconfigure_workers(self) -> None:
        """After a reload: every configured worker gets its settings again (one not yet
        configured gets them when it is)."""
        for worker in [w for w in self.workers.all() if w.configured]:
            try:
                self.workers.send_config(worker, self.worker_config(worker))
            except OSError:
                self.worker_lost(worker, "cannot send to it")

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
