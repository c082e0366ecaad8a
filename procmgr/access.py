"""Look up and verify the access object of a request; apply the policy.

Two forms (DESIGN.md section 3): a JWT (inline as the request's ``auth``, or ``isToken`` in the
session hash) verified against keys the offline CA certified, and, behind ``compat_enabled``,
the C server's RSA-signed ``isAuth``. The web host's Redis is untrusted storage: the session
hash is read for every request (procmgr/sessions.py, off the loop, bounded in time and size),
so a session the auth server deletes or marks ``revoked`` stops working at the next request,
and we believe only what a signature covers. A verified object is remembered by its exact
bytes until it expires, so the steady state costs the lookup and a dict lookup, not a
signature verification.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from authsign import compat, sessioncheck, tokens
from authsign.compat import Access
from certs.trust import TrustStore
from procmgr import audit
from procmgr.sessions import Session
from pyis_common.config import ProcmgrConfig
from pyis_common.errors import Forbidden, Unauthorized
from pyis_common.request import Request

log = logging.getLogger("procmgr.access")
MAX_VERIFIED = 4096  # verified-object memo entries (each a few hundred bytes)


class AccessChecker:
    def __init__(self, cfg: ProcmgrConfig) -> None:
        self.cfg = cfg
        self.rsa = (
            compat.load_public_key(Path(cfg.compat_pubkey).read_bytes())
            if cfg.compat_enabled and cfg.compat_pubkey
            else None
        )
        self.trust = (
            TrustStore(
                Path(cfg.trust_root),
                Path(cfg.trust_certs),
                Path(cfg.trust_crl) if cfg.trust_crl else None,
            )
            if cfg.trust_root
            else None
        )
        self._verified: dict[bytes, Access] = {}

    def reload(self) -> None:
        """SIGHUP: re-read signing certificates and the CRL now."""
        if self._trust_changed() and self.trust is not None:
            log.info("trust store reloaded: kids %s", ", ".join(self.trust.kids()) or "none")

    def _trust_changed(self) -> bool:
        """Re-stat the trust files; when they changed, nothing verified under the old trust
        may be used again (whether SIGHUP or a request noticed the change first)."""
        if self.trust is None or not self.trust.reload_if_changed():
            return False
        self._verified.clear()
        return True

    def check(self, req: Request, session: Session) -> Access:
        """The grant for this request given its session hash, or Unauthorized/Forbidden
        naming the reason."""
        isauth, sig, token, revoked = session.fields
        sessioncheck.require_live(session.exists, revoked)
        if req.auth is not None or token is not None:
            access = self._jwt(req, req.auth or (token or b"").decode("utf-8", "replace"))
        elif self.rsa is not None:
            rsa = self.rsa
            access = self._memo(
                (req.pid, isauth, sig),
                lambda: compat.verify(
                    rsa,
                    isauth,
                    sig,
                    req.pid,
                    leeway_s=self.cfg.clock_leeway_s,
                    max_age_s=self.cfg.compat_max_age_s,
                ),
            )
        elif isauth is not None:
            raise Unauthorized("this server accepts no isAuth access objects")
        else:
            raise sessioncheck.no_access_object()
        self._policy(req, access)
        return access

    def _jwt(self, req: Request, token: str) -> Access:
        if self.trust is None:
            raise Unauthorized("this server accepts no token access objects")
        self._trust_changed()  # a stat per file: rotation and revocation need no restart
        trust = self.trust
        return self._memo(
            (req.pid, req.type, token),
            lambda: tokens.verify(
                token,
                trust.key_for,
                pid=req.pid,
                aud=self.cfg.audience,
                job_type=req.type,
                leeway_s=self.cfg.clock_leeway_s,
            ),
        )

    def _memo(self, parts: tuple[object, ...], verify: Callable[[], Access]) -> Access:
        """Verify once per exact object; expiry is still checked on every use."""
        digest = hashlib.sha256(repr(parts).encode()).digest()
        access = self._verified.get(digest)
        if access is None:
            access = verify()
            if len(self._verified) >= MAX_VERIFIED:
                self._verified.clear()
            self._verified[digest] = access
        if access.expires is not None and time.time() > access.expires + self.cfg.clock_leeway_s:
            raise Unauthorized("access object has expired")
        return access

    def _policy(self, req: Request, access: Access) -> None:
        # a path-bound token serves only the types whose every file the worker checks against
        # it (worker/bound.py): the job table's path_checked, False unless a row says so
        if access.paths is not None and not req.job_type.path_checked:
            why = f"a path-bound token cannot run '{req.type}' jobs"
            audit.refused(access, req, why)
            raise Forbidden(why)
        if req.esaf == 0:
            if self.cfg.require_esaf:
                raise Forbidden("this server needs an 'esaf' in every request")
            return
        if req.esaf not in access.allowed_esafs:
            raise Forbidden(f"session is not allowed to read ESAF {req.esaf}")
