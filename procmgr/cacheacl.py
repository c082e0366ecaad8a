"""The cache Redis, administered by the procmgr alone, with one Redis user per ESAF.

The procmgr logs in as its own admin user (password from a 0600 file: a URL or a flag shows in
``ps``), turns ``default`` off and drops its open connections (``off`` spares them), and refuses
the tier while an unauthenticated ``PING`` still succeeds: otherwise every local user could
read and rewrite every ESAF's entries, or run ``FLUSHALL`` and ``ACL SETUSER``.

Each ESAF gets an ACL user whose key pattern is that ESAF's prefix only and whose commands are
the few the cache needs; a worker is handed just its ESAF's credential, over its private channel
(never through the zygote, never in a log). Lua: the worker's lock release (redis-py's ``Lock``)
is the one script, preloaded here; workers may ``EVALSHA`` it but not ``EVAL`` or ``SCRIPT
LOAD``, so no endless script can freeze the cache for every ESAF. Redis keeps ACL users and
scripts in memory only, so ``ensure`` re-applies all of it, same passwords, after a restart.

Every admin call after ``start`` runs on one admin thread, never on the procmgr loop (a
``SETUSER`` cost 1-35 ms there under load, for every new session): ``prepare`` makes an ESAF's
user while its worker forks, and ``fd`` (an eventfd the loop polls) says when a setup is done, so
the new worker is sent its credential at once, usually before it is even ready.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit

import redis
from redis.lock import Lock

from procmgr import boundedredis

log = logging.getLogger("procmgr.cacheacl")
ADMIN_TIMEOUT_S = 0.25  # per call, all of it: the procmgr loop must not stall on the cache
ADMIN_REPLY_BYTES = 64 << 10  # our admin replies are a few bytes; a squatter's are cut off
ENSURE_EVERY_S = 5.0  # how soon the tier comes back after a Redis restart
MAX_PASSWORD_BYTES = 4096
# GET/SET values, redis-py's token-owned Lock (SET NX PX, EVALSHA of the release script)
COMMANDS = "+get +set +del +exists +expire +pexpire +ping +evalsha +client|setname"
LOCK_SCRIPTS = (Lock.LUA_RELEASE_SCRIPT,)  # the only Lua a worker runs


class CacheOpen(RuntimeError):
    """The cache Redis answers without credentials: using it would share every ESAF's data."""


def read_password(path: str) -> str:
    """A secret from a regular file that is ours and that nobody else may read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ValueError(
            f"cannot open the cache Redis password file {path}: {exc.strerror}"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise ValueError(
                f"{path} must be a regular file owned by uid {os.geteuid()} with mode 0600"
            )
        text = os.read(fd, MAX_PASSWORD_BYTES).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)
    if not text:
        raise ValueError(f"{path} holds no password")
    return text


def _url(parts: SplitResult, userinfo: str = "") -> str:
    """``parts`` as a URL, with ``user:password@`` if given (urlunsplit drops the ``//`` of a
    ``unix:///path`` URL, which redis-py then refuses)."""
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{userinfo}{parts.netloc}{parts.path}{query}"


class _Admin:
    """A client on the procmgr's loop: each call bounded in time and bytes, whoever answers
    (while the cache Redis is down, a local user may be listening on its port)."""

    def __init__(self, url: str, **credentials: str) -> None:
        self._budget = boundedredis.Budget()
        self._client = boundedredis.client(url, self._budget, ADMIN_TIMEOUT_S, **credentials)

    def __call__(self) -> redis.Redis:
        self._budget.start(ADMIN_TIMEOUT_S, ADMIN_REPLY_BYTES)
        return self._client


class CacheAcl:
    def __init__(self, url: str, ttl_s: int, admin_user: str, password_file: str) -> None:
        if admin_user == "default":
            raise ValueError("cache_redis_user may not be 'default': the procmgr turns it off")
        parts = urlsplit(url)
        self._bare = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        self.url, self.ttl_s = _url(self._bare), ttl_s
        password = read_password(password_file)
        self.admin = _Admin(self.url, username=admin_user, password=password)
        if self._bare.scheme != "unix" and (self._bare.port or 6379) >= 1024:
            log.warning(
                "cache_redis is on unprivileged port %d: while that Redis is down a local user "
                "could listen there and be sent the admin password; use a unix socket in a "
                "root-owned directory or a port below 1024",
                self._bare.port or 6379,
            )
        self._passwords: dict[int, str] = {}
        self._passwords_lock = threading.Lock()  # the admin thread copies what the loop adds
        self._setups: dict[int, Future[bool]] = {}  # per ESAF: its user made (or being made)
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # readable: a setup is done
        self._ensuring: Future[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="cacheacl")
        self._last_ensure = 0.0
        self._secured = False

    @staticmethod
    def user(esaf: int) -> str:
        return f"pyis-e{esaf}"

    @staticmethod
    def prefix(esaf: int) -> str:
        return f"pyis:e{esaf}:"

    def start(self) -> None:
        """At start: secure the cache Redis now, or raise CacheOpen; unreachable is a warning
        (the tier comes on once it answers and is secured)."""
        self._secured = self._secure()

    def prepare(self, esaf: int) -> None:
        """Make ``esaf``'s user on the admin thread now (its first worker is forking); returns
        at once. A setup that failed is tried again."""
        setup = self._setups.get(esaf)
        if setup is not None and not (setup.done() and not setup.result()):
            return
        with self._passwords_lock:
            password = self._passwords.setdefault(esaf, secrets.token_urlsafe(32))
        self._setups[esaf] = setup = self._thread.submit(self._set_up, esaf, password)
        setup.add_done_callback(self._signal_done)

    def _signal_done(self, _setup: Future[bool]) -> None:
        try:
            os.eventfd_write(self.fd, 1)
        except OSError:
            pass  # closed at shutdown: nobody is waiting

    def setups_done(self) -> bool:
        """Whether a setup finished since the last call (drains ``fd``)."""
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            return False
        return True

    def ready(self, esaf: int) -> bool | None:
        """Whether ``esaf``'s user was made; None while it is being made (or never asked)."""
        setup = self._setups.get(esaf)
        return setup.result() if setup is not None and setup.done() else None

    def credential(self, esaf: int, wait_s: float = ADMIN_TIMEOUT_S) -> dict[str, Any] | None:
        """What a worker of ``esaf`` needs to use the tier, or None if it is not usable now.
        Waits (``wait_s`` at most: the procmgr loop passes 0) only for a setup ``prepare`` has
        not finished (a failed one is tried again)."""
        self.prepare(esaf)
        try:
            made = self._setups[esaf].result(timeout=wait_s)
        except FutureTimeout:
            return None
        if not made:
            return None
        userinfo = f"{quote(self.user(esaf), safe='')}:{quote(self._passwords[esaf], safe='')}@"
        url = _url(self._bare, userinfo)
        return {"url": url, "prefix": self.prefix(esaf), "ttl_s": self.ttl_s}

    def ensure(self, force: bool = False) -> None:
        """Re-secure and re-create every ESAF user (cheap, idempotent) on the admin thread;
        returns at once. Rate-limited unless forced; never two at a time."""
        now = time.monotonic()
        if not force and now - self._last_ensure < ENSURE_EVERY_S:
            return
        if self._ensuring is not None and not self._ensuring.done():
            return
        self._last_ensure = now
        self._ensuring = self._thread.submit(self._ensure_all)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
        os.close(self.fd)

    # -- on the admin thread ----------------------------------------------------------------
    def _set_up(self, esaf: int, password: str) -> bool:
        try:
            if not self._secured:
                self._secured = self._secure_or_log()
            return self._secured and self._setuser(esaf, password)
        except Exception:  # the loop reads the outcome: it must be a bool, whatever happened
            log.exception("cache Redis user setup failed")
            return False

    def _ensure_all(self) -> None:
        try:
            self._secured = self._secure_or_log()
            with self._passwords_lock:
                known = list(self._passwords.items())
            for esaf, password in known if self._secured else ():
                if not self._setuser(esaf, password):
                    return
        except Exception:
            log.exception("cache Redis ensure failed")

    def _secure_or_log(self) -> bool:
        try:
            return self._secure()
        except CacheOpen as exc:
            log.error("%s; the shared cache tier is off", exc)
            return False

    def _secure(self) -> bool:
        """``default`` off, its connections dropped, the lock script loaded, then proof that
        an anonymous client is refused (CacheOpen if not). False if Redis cannot be reached."""
        try:
            if (self.admin().acl_getuser("default") or {}).get("enabled", True):
                self.admin().execute_command("ACL", "SETUSER", "default", "off")
                log.warning("turned the cache Redis user 'default' off; put it in its ACL file")
                # only now: anonymous clients connecting later are NOAUTH, not worth a kill
                self.admin().execute_command("CLIENT", "KILL", "USER", "default")
            for script in LOCK_SCRIPTS:
                self.admin().script_load(script)
        except redis.exceptions.ResponseError as exc:
            log.error("the cache Redis refused the admin setup: %s", exc)  # the probe decides
        except redis.exceptions.RedisError as exc:
            log.warning("cache Redis unavailable for ACL setup: %s", type(exc).__name__)
            return False
        anyone = self._answers_anyone()
        if anyone:
            raise CacheOpen("the cache Redis answers an unauthenticated PING")
        return anyone is False

    def _answers_anyone(self) -> bool | None:
        """None: gone again meanwhile (the next ensure asks again)."""
        probe = _Admin(self.url)
        try:
            probe().ping()
        except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError):
            return False  # NOAUTH / NOPERM: as it must be
        except redis.exceptions.RedisError:
            return None
        finally:
            probe().close()
        return True

    def _setuser(self, esaf: int, password: str) -> bool:
        try:
            self.admin().acl_setuser(
                self.user(esaf),
                reset=True,
                enabled=True,
                passwords=[f"+{password}"],
                categories=["-@all"],
                commands=COMMANDS.split(),
                keys=[f"{self.prefix(esaf)}*"],
                reset_channels=True,
            )
        except redis.exceptions.RedisError as exc:
            log.warning("cache Redis unavailable for ACL setup: %s", type(exc).__name__)
            return False
        return True
