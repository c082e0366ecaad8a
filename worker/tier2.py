"""Stage-1 cache, tier 2: the image host's Redis, shared by the users of one ESAF.

Values are worker/tier2format.py's fixed binary layout, never pickle, checked before use.
The worker's Redis user may only touch keys under its ESAF's prefix (an ACL the procmgr sets
up), so one experiment cannot read another's images.

Best effort and bounded: short socket timeouts, redis-py's token-owned ``Lock`` with a
``blocking_timeout`` well under the 500 ms budget for single-flight across workers, and any
``RedisError`` is a miss (logged once per outage), never a failed request. A cold image's
first look (``lookup``) sends the GET and the lock's SET NX in one round trip; the lock is
released after the reply, on whichever thread runs that work (worker/afterreply.py), so its
token is the request's, not a thread's.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import redis
from redis.lock import Lock

from worker.afterreply import later
from worker.cache import Key
from worker.tier2format import DecodeError, Entry, decode, encode

log = logging.getLogger("worker.tier2")
SOCKET_TIMEOUT_S = 0.1  # a cache slower than this is no cache
LOCK_TIMEOUT_S = 10.0  # a producer that died frees the lock after this (TTL on the lock key)
LOCK_WAIT_S = 0.3  # followers wait this long for the producer, then read the file themselves


class Lookup(NamedTuple):
    """One round trip's answer: the entry, or (a miss) the producer's lock token if the lock
    was free and is now ours (None: another producer holds it, or the tier is down)."""

    value: Entry | None
    token: str | None


def new_token() -> str:
    """A lock token: random, naming no host or time (redis-py's default is a uuid1)."""
    return secrets.token_hex(16)


class RedisTier:
    """get / compute-once-and-set for stage-1 results of one ESAF."""

    def __init__(self, url: str, prefix: str, ttl_s: int) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        self.prefix, self.ttl_s = prefix, ttl_s
        self._down = False
        self._lock = threading.Lock()
        self.hits = self.misses = self.errors = 0

    def name(self, key: Key) -> str:
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:40]
        return f"{self.prefix}s1:{digest}"

    def get(self, key: Key, *, again: bool = False) -> Entry | None:
        """The entry, or None; ``again``: a second look, whose miss was counted already."""
        return self._entry(key, self._call(lambda: self.client.get(self.name(key))), again)

    def lookup(self, key: Key) -> Lookup:
        """The entry, or the producer's lock taken for us if it was free: the GET and the
        lock's SET NX PX in one round trip (a cold image paid two). A hit that took the lock
        gives it back after the reply."""
        name, token = self.name(key), new_token()
        lock = self._producer_lock(name)  # the SET NX below is its acquire, by its name
        pipe = self.client.pipeline(transaction=False)
        pipe.get(name)
        pipe.set(lock.name, token, nx=True, px=int(LOCK_TIMEOUT_S * 1000))
        replies = self._call(pipe.execute)
        blob, locked = replies if isinstance(replies, list) and len(replies) == 2 else (None, None)
        value = self._entry(key, blob)
        if not locked:
            return Lookup(value, None)
        if value is None:
            return Lookup(None, token)
        self._release_later(lock, token)
        return Lookup(value, None)

    def _entry(self, key: Key, blob: Any, again: bool = False) -> Entry | None:
        if not isinstance(blob, bytes):
            self.misses += 0 if again else 1
            return None
        try:
            value = decode(blob, key)
        except (DecodeError, ValueError, TypeError):
            log.warning("dropped a malformed cache value")
            self._call(lambda: self.client.delete(self.name(key)))
            return None
        self.hits += 1
        return value

    def put(self, key: Key, value: Entry) -> None:
        """Share a result computed without the lock (from a held pyramid) with this ESAF,
        once the reply is sent (worker/afterreply.py)."""
        later(lambda: self._put(key, value))

    def _put(self, key: Key, value: Entry) -> None:
        blob = encode(*value)
        if blob is not None:
            self._call(lambda: self.client.set(self.name(key), blob, ex=self.ttl_s))

    def produce(
        self,
        key: Key,
        compute: Callable[[], Entry],
        cacheable: Callable[[], bool],
        looked: Lookup | None = None,
    ) -> tuple[Entry, str]:
        """Compute once across workers: hold the lock, or wait briefly for whoever does.

        The caller has just missed ``key`` (``looked``: by ``lookup``, which tried the lock
        too). If the producer died, its lock expires (LOCK_TIMEOUT_S) and the next request
        takes over; a follower never waits more than LOCK_WAIT_S before reading the file
        itself. The write and the release come after the reply, in that order: followers still
        find the value when the lock is gone.
        """
        name = self.name(key)
        lock = self._producer_lock(name)
        token = looked.token if looked is not None else self._take(lock, blocking=False)
        waited = token is None  # held by another producer (or the tier is down)
        if token is None:
            token = self._take(lock, blocking=True)
        try:
            # a producer may have finished while we waited, whether we then got its lock or
            # timed out: one GET (a fraction of a ms on the host's Redis) beats a second read.
            # A lock free at once skips it: only a producer that finished within the instant
            # since the caller's miss is missed, at the cost of a read, not of a wrong value
            value = self.get(key, again=True) if waited else None
            if value is not None:
                return value, "redis"
            value = compute()
            if cacheable():  # a file still being written is not cached
                self.put(key, value)
            return value, "file"
        finally:
            if token is not None:
                self._release_later(lock, token)

    def _producer_lock(self, name: str) -> Lock:
        """The producer's lock of entry ``name``; not thread-local: it is released after the
        reply, maybe on another thread than the one that took it."""
        return self.client.lock(
            name + ":lock",
            timeout=LOCK_TIMEOUT_S,
            blocking_timeout=LOCK_WAIT_S,
            thread_local=False,
        )

    def _take(self, lock: Lock, blocking: bool) -> str | None:
        """Our token if we got the lock (blocking: waiting up to LOCK_WAIT_S)."""
        token = new_token()
        return token if self._call(lambda: lock.acquire(blocking=blocking, token=token)) else None

    def _release_later(self, lock: Lock, token: str) -> None:
        """Release by the preloaded script once the reply is sent; the token is ours."""
        later(lambda: self._call(lambda: lock.do_release(token)))

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except redis.exceptions.LockError:
            return None
        except redis.exceptions.RedisError as exc:
            self.errors += 1
            with self._lock:
                if not self._down:
                    log.warning("cache tier unavailable (%s); reading files", type(exc).__name__)
                self._down = True
            return None
        if self._down:
            with self._lock:
                if self._down:
                    log.warning("cache tier is back")
                self._down = False
        return result

    def counters(self) -> dict[str, int]:
        return {"redis_hits": self.hits, "redis_misses": self.misses, "redis_errors": self.errors}
