"""The session memo's safety: the web host's Redis says when a session hash changes.

The memo (procmgr/sessionmemo.py) may answer a request only while this watch is live: a
thread subscribed to the keyspace notifications of the session Redis (``__keyspace@<db>__:*``),
whose ``notify-keyspace-events`` covers keyspace events (K) for hash, generic, expired and
evicted events (``h g x e``, or ``A``), as ``CONFIG GET`` reports every RECHECK_S. Any event on
a key drops the memo's entry for that pid at once (a logout deletes the hash, a revocation
sets a field, a new token replaces one, a TTL expires it). Redis writes the notification
before the reply to the command that made it, and the loop trusts an entry only when no
notification is waiting on the watch's socket or being handled (``quiet``), so a request that
follows a revocation is refused like any other. Should Redis drop a notification while the
connection stays up (it does not), or an operator turn notifications off at run time, the
memo's own bound holds: an entry lives at most ``session_memo_s``, and the next check (at most
RECHECK_S later) turns the watch off. When the watch is not live (notifications off, CONFIG
refused, the connection lost, more than DRAIN_BYTES at once) the memo is cleared and every
request reads its session, as with ``session_memo_s = 0``; the watch tries again after RETRY_S.

That Redis is not trusted with authority, and needs none here: a notification can only make
the procmgr read a session again, and a Redis that withheld them could as well answer the read
with an old hash. Every call is bounded in time and bytes (procmgr/boundedredis.py).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import Any

from procmgr import boundedredis
from procmgr.sessionmemo import SessionMemo

log = logging.getLogger("procmgr.sessions")
RECHECK_S = 2.0  # notify-keyspace-events read again this often, however busy the channel
RETRY_S = 10.0  # after the watch failed (or found notifications off), try again this late
DRAIN_BYTES = 1 << 20  # notifications read in one go; more is a flood: the watch drops it
CONFIG_BYTES = 16 << 10
NEEDED = "hgxe"  # hash, generic (DEL, RENAME, EXPIRE), expired, evicted


def covers(flags: str) -> bool:
    """Whether a ``notify-keyspace-events`` value sends every event the memo must hear."""
    return "K" in flags and ("A" in flags or all(c in flags for c in NEEDED))


class SessionWatch:
    def __init__(self, url: str, memo: SessionMemo, timeout_s: float) -> None:
        self.url, self.memo, self.timeout_s = url, memo, timeout_s
        self.live = False  # subscribed, notifications on: the memo may answer
        self.idle = False  # the thread waits on its socket (nothing read and unhandled)
        self._poll: Any = None  # a poll object on the subscribed socket, for ``quiet``
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._why = "not started"  # why the memo is off now ("" while it is on)

    def start(self) -> None:
        """Once, at the first session read: the store is known to answer by then."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="session-watch", daemon=True)
            self._thread.start()

    def quiet(self) -> bool:
        """On the loop: the memo may answer now (live, and no notification unhandled)."""
        poll = self._poll
        return self.live and self.idle and poll is not None and not poll.poll(0)

    def stop(self) -> None:
        self._stop.set()

    # -- on the watch's thread ---------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                why = self._watch()
            except Exception as exc:  # RedisError, a budget, anything: the memo stops
                why = f"{type(exc).__name__}: {str(exc)[:100]}"
            self._down(why)
            self._stop.wait(RETRY_S)

    def _down(self, why: str) -> None:
        self.live, self.idle, self._poll = False, False, None
        self.memo.clear()
        if why != self._why:
            log.warning("session memo off (%s); every request reads its session", why)
            self._why = why

    def _client(self) -> tuple[Any, boundedredis.Budget]:
        budget = boundedredis.Budget()
        return boundedredis.client(self.url, budget, self.timeout_s), budget

    def _notifications_on(self, client: Any, budget: boundedredis.Budget) -> bool:
        budget.start(self.timeout_s, CONFIG_BYTES)
        flags = client.config_get("notify-keyspace-events").get("notify-keyspace-events", "")
        return covers(str(flags))

    def _watch(self) -> str:
        """Subscribe and hand every notification to the memo; returns why it stopped."""
        config, config_budget = self._client()
        if not self._notifications_on(config, config_budget):
            return "the session Redis sends no keyspace notifications (notify-keyspace-events)"
        client, budget = self._client()
        db = int(client.connection_pool.connection_kwargs.get("db", 0))
        prefix = f"__keyspace@{db}__:".encode()
        pubsub = client.pubsub()
        budget.start(self.timeout_s, CONFIG_BYTES)
        pubsub.psubscribe(prefix + b"*")
        confirmed = pubsub.get_message(timeout=self.timeout_s)
        if not confirmed or confirmed.get("type") != "psubscribe":
            return "no confirmation of the subscription"
        fd = pubsub.connection._sock.fileno()
        wait, peek = select.poll(), select.poll()  # one each: the thread's and the loop's
        wait.register(fd, select.POLLIN)
        peek.register(fd, select.POLLIN)
        self.memo.clear()  # nothing read before the subscription counts
        self._poll, self.live = peek, True
        if self._why:
            log.info("session memo on: keyspace notifications of the session Redis watched")
            self._why = ""
        checked = time.monotonic()
        while not self._stop.is_set():
            self.idle = True
            ready = wait.poll(max(0.0, checked + RECHECK_S - time.monotonic()) * 1000)
            self.idle = False
            budget.start(self.timeout_s, DRAIN_BYTES)
            while (msg := pubsub.get_message(timeout=0)) is not None:
                self._heard(msg, prefix)
            if ready and ready[0][1] & (select.POLLHUP | select.POLLERR):
                return "the subscription's connection closed"
            if time.monotonic() - checked >= RECHECK_S:
                if not self._notifications_on(config, config_budget):
                    return "keyspace notifications were turned off"
                checked = time.monotonic()
        return "stopped"

    def _heard(self, msg: dict[str, Any], prefix: bytes) -> None:
        channel = msg.get("channel")
        if msg.get("type") != "pmessage" or not isinstance(channel, bytes):
            return
        key = channel[len(prefix) :] if channel.startswith(prefix) else b""
        self.memo.drop(key.decode("utf-8", "replace"))
