"""The procmgr loop's housekeeping: the steps it takes after every turn, whatever came in.

Deadlines passed (lookups, then requests), the cache Redis re-secured, stale workers retired,
old back-offs forgotten, the proxy link re-armed and told our capacity. (The gauges are read
when a status answer or a scrape asks for them, not every turn.)
"""

from __future__ import annotations

import logging

from procmgr.managerbase import ManagerBase
from pyis_common.errors import Busy

log = logging.getLogger("procmgr")


class Housekeeping(ManagerBase):
    def housekeep(self, now: float) -> None:
        """What the loop does after handling events, each a step of its own."""
        self.expire_lookups(now)
        self.expire_requests(now)
        self.resecure_cache()
        self.retire_workers(now)
        self.workers.forget_old_failures(now)
        self.link.rearm(now)
        self.link.beat(now, self.capacity())

    def expire_lookups(self, now: float) -> None:
        """A lookup its thread did not report in time (all threads hung, a DNS stall): busy:,
        and the store counts as failed (the breaker opens)."""
        for lid in [lid for lid, p in self.pending.items() if p.deadline <= now]:
            p = self.pending.pop(lid)
            why = f"no answer within {self.cfg.session_timeout_s} s"
            self.sessions.failed(why)
            sentence = f"the access object store is unavailable ({why}); try again"
            self.refuse(p.envelope, p.req, p.t0, Busy(sentence))

    def expire_requests(self, now: float) -> None:
        """Answer ``timeout:`` past the deadline; a worker silent for a whole deadline is hung
        (stopped, deadlocked, swapping) and is replaced, so the session recovers by itself."""
        for flight in [f for f in self.inflight.values() if f.deadline <= now]:
            del self.inflight[flight.rid]
            flight.worker.inflight.discard(flight.rid)
            self.answer_error(flight, "timeout", "the image server did not answer in time")
            worker = flight.worker
            silent = now - max(worker.last_heard, worker.started)
            if silent >= self.cfg.request_timeout_s and worker in self.workers.all():
                self.worker_lost(worker, f"silent for {silent:.1f} s")

    def resecure_cache(self) -> None:
        """After a cache Redis restart, its ESAF users and our ACL come back (rate-limited)."""
        if self.cacheacl is not None:
            self.cacheacl.ensure()

    def retire_workers(self, now: float) -> None:
        """Idle workers stop; stuck ones (half a message, never ready) are lost."""
        for worker, why in self.workers.stale(now):
            if why == "idle":
                log.info("%s idle; stopping it", worker.name)
                self.workers.remove(worker)
            else:
                self.worker_lost(worker, why)

    def capacity(self) -> int:
        """What each proxy may have in flight here: nothing once we are shutting down. The
        long-polls held now come on top (announced within a heartbeat), so they never use up
        the credit other users' images need."""
        if self.stopping_since is not None:
            return 0
        return self.cfg.max_in_flight + self.slots_used(True)
