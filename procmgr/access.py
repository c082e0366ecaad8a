"""Look up and verify the access object named by a request's ``pid``; apply the policy.

The web host's Redis is untrusted storage: we read ``HMGET <pid> isAuth isAuthSig`` from it on
every request (so a session the auth server deletes stops working at the next request) and
believe only what the signature covers. A verified object is remembered by its exact bytes, so
the steady state costs one Redis round trip and a dict lookup, not an RSA verification.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import redis

from authsign import compat
from authsign.compat import Access, AccessError
from pyis_common.config import ProcmgrConfig
from pyis_common.errors import Busy, Forbidden, Unauthorized
from pyis_common.request import Request

log = logging.getLogger("procmgr.access")
REDIS_TIMEOUT_S = 0.25  # the whole request budget is 500 ms; a slower store is a failure
MAX_VERIFIED = 4096  # verified-object memo entries (each a few hundred bytes)


class AccessChecker:
    def __init__(self, cfg: ProcmgrConfig) -> None:
        self.cfg = cfg
        self.key = compat.load_public_key(Path(cfg.compat_pubkey).read_bytes())
        self.redis = redis.Redis.from_url(
            cfg.auth_redis,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
        )
        self._verified: dict[bytes, Access] = {}

    def check(self, req: Request) -> Access:
        """The grant for this request, or Unauthorized/Forbidden/Busy naming the reason."""
        isauth, sig = self._fetch(req.pid)
        memo = hashlib.sha256(req.pid.encode() + b"\0" + (isauth or b"") + b"\0" + (sig or b""))
        access = self._verified.get(memo.digest())
        try:
            if access is None:
                access = compat.verify(
                    self.key, isauth, sig, req.pid, leeway_s=self.cfg.clock_leeway_s
                )
                if len(self._verified) >= MAX_VERIFIED:
                    self._verified.clear()
                self._verified[memo.digest()] = access
            elif (
                access.expires is not None
                and time.time() > access.expires + self.cfg.clock_leeway_s
            ):
                raise AccessError("unauthorized", "access object has expired")
        except AccessError as exc:
            raise (Forbidden if exc.code == "forbidden" else Unauthorized)(str(exc)) from None
        self._policy(req, access)
        return access

    def _fetch(self, pid: str) -> tuple[bytes | None, bytes | None]:
        try:
            isauth, sig = self.redis.hmget(pid, "isAuth", "isAuthSig")
        except redis.exceptions.ResponseError:
            # WRONGTYPE: the key exists but is not a hash; the C server exit(-1)ed here
            raise Unauthorized("no access object for this session") from None
        except redis.exceptions.RedisError as exc:
            log.warning("access object store unavailable: %s", type(exc).__name__)
            raise Busy("the access object store is unavailable; try again") from None
        return isauth, sig

    def _policy(self, req: Request, access: Access) -> None:
        if req.esaf == 0:
            if self.cfg.require_esaf:
                raise Forbidden("this server needs an 'esaf' in every request")
            return
        if req.esaf not in access.allowed_esafs:
            raise Forbidden(f"session is not allowed to read ESAF {req.esaf}")
