"""Per-ESAF Redis users for the shared stage-1 cache (the C server's Redis had no auth).

Each ESAF gets an ACL user whose key pattern is that ESAF's prefix only and whose commands are
the few the cache needs; a worker is handed just its ESAF's credential, over its private
channel (never through the zygote, never in a log). Redis keeps ACL users in memory only, so
``ensure`` re-creates them, with the same passwords, after a Redis restart.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any
from urllib.parse import quote, urlsplit

import redis

log = logging.getLogger("procmgr.cacheacl")
ADMIN_TIMEOUT_S = 0.25  # the procmgr loop must not stall on a dead cache
ENSURE_EVERY_S = 5.0  # how soon the tier comes back after a Redis restart
COMMANDS = (
    "+get +set +del +exists +expire +pexpire +ping +evalsha +script|load "
    "+client|setname"
)  # GET/SET values, redis-py's token-owned Lock (SET NX PX, EVALSHA release)


class CacheAcl:
    def __init__(self, url: str, ttl_s: int) -> None:
        self.url, self.ttl_s = url, ttl_s
        self.admin = redis.Redis.from_url(
            url, socket_timeout=ADMIN_TIMEOUT_S, socket_connect_timeout=ADMIN_TIMEOUT_S
        )
        self._passwords: dict[int, str] = {}
        self._last_ensure = 0.0

    @staticmethod
    def user(esaf: int) -> str:
        return f"pyis-e{esaf}"

    @staticmethod
    def prefix(esaf: int) -> str:
        return f"pyis:e{esaf}:"

    def credential(self, esaf: int) -> dict[str, Any] | None:
        """What a worker of ``esaf`` needs to use the tier, or None if Redis is unreachable."""
        password = self._passwords.setdefault(esaf, secrets.token_urlsafe(32))
        if not self._setuser(esaf, password):
            return None
        parts = urlsplit(self.url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 6379
        db = parts.path.lstrip("/") or "0"
        url = f"redis://{quote(self.user(esaf))}:{quote(password)}@{host}:{port}/{db}"
        return {"url": url, "prefix": self.prefix(esaf), "ttl_s": self.ttl_s}

    def ensure(self, force: bool = False) -> None:
        """Re-create every ESAF user (cheap, idempotent); rate-limited unless forced."""
        now = time.monotonic()
        if not force and now - self._last_ensure < ENSURE_EVERY_S:
            return
        self._last_ensure = now
        for esaf, password in list(self._passwords.items()):
            if not self._setuser(esaf, password):
                return

    def _setuser(self, esaf: int, password: str) -> bool:
        try:
            self.admin.acl_setuser(
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
