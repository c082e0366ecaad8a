"""Session lookups (and progress publishes) on the web host's Redis, off the procmgr's loop.

That Redis is not ours: a compromised web host can trickle a reply one byte at a time or store
100 MB in a session field. So every call runs on a small thread pool, never on the loop, with
an overall deadline and a byte budget (procmgr/boundedredis.py); field sizes come first
(``HSTRLEN``, in the same round trip) and a field over ``session_max_field_bytes`` is refused
unread. Results come back
through a queue and an eventfd the loop polls. A failed call (error, deadline, budget) opens a
circuit breaker: for STORE_RETRY_S every lookup is answered ``busy:`` at once and publishes are
dropped, so an outage costs each user one quick reply, not a queue of stuck threads.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis

from procmgr import boundedredis
from pyis_common.errors import Busy, PyisError, Unauthorized

log = logging.getLogger("procmgr.sessions")
FIELDS = ("isAuth", "isAuthSig", "isToken", "revoked")
THREADS = 8  # lookups in parallel; one hung call must not hold up the others
STORE_RETRY_S = 1.0  # after a failed call, answer busy: at once for this long
REPLY_SLACK_BYTES = 4096  # HELLO/SETINFO replies and RESP framing around the fields
PUBLISH_BYTES = 1024  # a PUBLISH reply is an integer
MAX_PUBLISHES = 64  # progress publishes waiting for a thread; more are dropped


@dataclass(frozen=True)
class Session:
    """The session hash as read: whether it exists, and FIELDS in order (None if absent)."""

    exists: bool
    fields: tuple[bytes | None, ...]


class FieldTooLarge(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


Outcome = Session | PyisError


class SessionStore:
    def __init__(self, url: str, timeout_s: float, max_field_bytes: int) -> None:
        boundedredis.client(url, boundedredis.Budget(), timeout_s)  # a bad URL stops the start
        self.url, self.timeout_s, self.max_field_bytes = url, timeout_s, max_field_bytes
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._results: queue.SimpleQueue[tuple[int, Outcome]] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="session")
        # one thread, so progress lines keep their order and "done" comes last; a hung publish
        # never takes a lookup's thread
        self._publisher = ThreadPoolExecutor(1, thread_name_prefix="publish")
        self._local = threading.local()
        self._down_until = 0.0
        self._publishes = 0
        self._lock = threading.Lock()

    # -- on the loop -----------------------------------------------------------------------
    def lookup(self, lid: int, pid: str) -> None:
        """Start a lookup; its outcome arrives through ``results``. Busy while the breaker is
        open."""
        if time.monotonic() < self._down_until:
            raise Busy("the access object store is unavailable; try again")
        deadline = time.monotonic() + self.timeout_s
        self._pool.submit(self._answer, lid, pid, deadline)

    def results(self) -> list[tuple[int, Outcome]]:
        """Finished lookups (call when ``fd`` is readable)."""
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass
        out = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                return out

    def publish(self, channel: str, payload: str) -> None:
        """Best effort: dropped while the breaker is open or too many are waiting."""
        with self._lock:
            if time.monotonic() < self._down_until or self._publishes >= MAX_PUBLISHES:
                return
            self._publishes += 1
        self._publisher.submit(self._publish, channel, payload)

    def failed(self, why: str) -> None:
        """A call failed (also: the loop gave up on it): open the breaker."""
        if time.monotonic() >= self._down_until:
            log.warning("access object store unavailable: %s", why)
        self._down_until = time.monotonic() + STORE_RETRY_S

    def close(self) -> None:
        """Drop queued calls; ``fd`` stays open until exit, as a running call may still signal
        it (closed, its number could be reused by another file)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._publisher.shutdown(wait=False, cancel_futures=True)

    # -- on the pool's threads -------------------------------------------------------------
    def _client(self, timeout_s: float, max_bytes: int) -> redis.Redis:
        """This thread's client, its budget set for one call."""
        if not hasattr(self._local, "client"):
            self._local.budget = boundedredis.Budget()
            self._local.client = boundedredis.client(self.url, self._local.budget, self.timeout_s)
        self._local.budget.start(timeout_s, max_bytes)
        return self._local.client

    def _answer(self, lid: int, pid: str, deadline: float) -> None:
        left = deadline - time.monotonic()
        outcome = self._fetch(pid, left) if left > 0 else self._failure("no thread in time")
        self._results.put((lid, outcome))
        os.eventfd_write(self.fd, 1)

    def _fetch(self, pid: str, timeout_s: float) -> Outcome:
        """One round trip: EXISTS, HSTRLEN of each field, HMGET. The sizes arrive first; if one
        is over the cap the connection is dropped before the fields are read, so a real Redis
        never costs us an oversized field, and one that lies about sizes runs into the byte
        budget."""
        budget = self.max_field_bytes * len(FIELDS) + REPLY_SLACK_BYTES
        commands = [
            ("EXISTS", pid),
            *(("HSTRLEN", pid, f) for f in FIELDS),
            ("HMGET", pid, *FIELDS),
        ]
        try:
            pool = self._client(timeout_s, budget).connection_pool
            conn = pool.get_connection()
            try:
                conn.send_packed_command(conn.pack_commands(commands))
                exists = conn.read_response()
                for name in FIELDS:
                    size = conn.read_response()
                    if not isinstance(size, int) or size > self.max_field_bytes:
                        raise FieldTooLarge(name)
                values = conn.read_response()
            except BaseException:
                conn.disconnect()  # replies may be left unread: never reuse it
                raise
            finally:
                pool.release(conn)
            if not isinstance(values, list) or len(values) != len(FIELDS):
                return self._failure("a malformed reply")
            if not exists:
                return Session(False, (None,) * len(FIELDS))
            return Session(True, tuple(v if isinstance(v, bytes) else None for v in values))
        except FieldTooLarge as exc:
            log.warning("session field %s over %d bytes; refused", exc.field, self.max_field_bytes)
            return Unauthorized(
                f"the access object's {exc.field} field is larger than {self.max_field_bytes} bytes"
            )
        except redis.exceptions.ResponseError:
            # WRONGTYPE: the key exists but is not a hash; the C server exit(-1)ed here
            return Unauthorized("no access object for this session")
        except boundedredis.ReplyTooLarge:
            return self._failure(f"a reply over {budget} bytes")
        except redis.exceptions.TimeoutError:
            return self._failure(f"no answer within {self.timeout_s} s")
        except redis.exceptions.RedisError as exc:
            return self._failure(type(exc).__name__)
        except Exception:  # never lose the reply: the loop waits for this outcome
            log.exception("session lookup failed")
            return self._failure("lookup failed")

    def _failure(self, why: str) -> Busy:
        self.failed(why)
        return Busy(f"the access object store is unavailable ({why}); try again")

    def _publish(self, channel: str, payload: str) -> None:
        try:
            if time.monotonic() < self._down_until:
                return  # the store failed since this was queued
            self._client(self.timeout_s, PUBLISH_BYTES).publish(channel, payload)
        except redis.exceptions.RedisError as exc:
            log.warning("could not publish progress: %s", type(exc).__name__)
            self.failed(f"publish: {type(exc).__name__}")
        except Exception:
            log.exception("progress publish failed")
        finally:
            with self._lock:
                self._publishes -= 1
