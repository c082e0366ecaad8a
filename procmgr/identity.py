"""Who a worker runs as: the user's UID, the ESAF group's GID, the ESAF home.

Root is never an answer: UID 0 or GID 0 is refused here, before any fork, and again by the
child after it dropped privileges (privdrop.verify). Nor is any account below ``min_uid``
(daemons, system users), nor a user name that is not a portable one (POSIX's portable filename
characters, as useradd allows): names reach getpwnam, NSS modules and log lines.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

from pyis_common.config import ProcmgrConfig
from pyis_common.errors import Forbidden

PORTABLE_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}")  # 32: useradd's own limit
HOLD_S = 5.0  # a resolved identity is reused this long (a refusal is never remembered)
MAX_HELD = 4096


@dataclass(frozen=True)
class Identity:
    user: str
    uid: int
    gid: int
    home: str
    esaf: int

    @property
    def key(self) -> tuple[int, int]:
        """One worker per (user, ESAF)."""
        return (self.uid, self.esaf)


class Identities:
    """``resolve`` remembered for HOLD_S per (user, ESAF): every request needs its identity,
    and each resolve is two or three NSS lookups (files, LDAP, sssd) on the loop. An account
    or group changed meanwhile is seen at most HOLD_S later; a running worker keeps the
    identity it started with anyway. Cleared on a reload (the rules may have changed)."""

    def __init__(self, hold_s: float = HOLD_S, max_held: int = MAX_HELD) -> None:
        self.hold_s, self.max_held = hold_s, max_held
        self._held: OrderedDict[tuple[str, int], tuple[float, Identity]] = OrderedDict()

    def resolve(self, cfg: ProcmgrConfig, user: str, esaf: int) -> Identity:
        now = time.monotonic()
        held = self._held.get((user, esaf))
        if held is not None and now < held[0]:
            return held[1]
        ident = resolve(cfg, user, esaf)
        self._held.pop((user, esaf), None)
        while len(self._held) >= self.max_held:
            self._held.popitem(last=False)
        self._held[(user, esaf)] = (now + self.hold_s, ident)
        return ident

    def clear(self) -> None:
        self._held.clear()


def resolve(cfg: ProcmgrConfig, user: str, esaf: int) -> Identity:
    if cfg.dev_user:
        return _dev_identity(cfg, esaf)
    if not PORTABLE_USER.fullmatch(user):
        raise Forbidden("the session's user name is not a portable user name")
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise Forbidden(f"user {user!r} is not known on this image host") from None
    if pw.pw_uid == 0 or pw.pw_uid < cfg.min_uid:
        raise Forbidden(f"refusing to serve a session as UID {pw.pw_uid} (min_uid {cfg.min_uid})")
    if esaf == 0:
        gid, home = pw.pw_gid, pw.pw_dir
    else:
        group = cfg.esaf_group.format(esaf=esaf)
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise Forbidden(f"ESAF group {group!r} is not known on this image host") from None
        if gid == 0:
            raise Forbidden("refusing to serve a session with GID 0")
        home = _esaf_home(cfg, group, esaf)
    if gid == 0:
        raise Forbidden("refusing to serve a session with GID 0")
    return Identity(user=user, uid=pw.pw_uid, gid=gid, home=home, esaf=esaf)


def _esaf_home(cfg: ProcmgrConfig, group: str, esaf: int) -> str:
    if cfg.esaf_home:
        return cfg.esaf_home.format(esaf=esaf, group=group)
    try:
        return pwd.getpwnam(group).pw_dir
    except KeyError:
        raise Forbidden(f"ESAF {esaf} has no home directory on this image host") from None


def _dev_identity(cfg: ProcmgrConfig, esaf: int) -> Identity:
    """--dev: every session is served as one local user (``nobody`` when we run as root)."""
    pw = pwd.getpwnam(cfg.dev_user)
    if pw.pw_uid == 0 or pw.pw_gid == 0:
        raise Forbidden("refusing to serve a session as root, even in --dev")
    if os.geteuid() != 0 and pw.pw_uid != os.geteuid():
        raise Forbidden("--dev without root can only serve the current user")
    home = cfg.esaf_home.format(esaf=esaf, group="") if cfg.esaf_home else pw.pw_dir
    return Identity(user=pw.pw_name, uid=pw.pw_uid, gid=pw.pw_gid, home=home, esaf=esaf)
