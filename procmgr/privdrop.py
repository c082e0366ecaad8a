"""Drop to (uid, gid) with no supplementary groups, then prove it.

Runs in the freshly forked child only. Order matters: groups and GID while we are still root,
UID last. Afterwards ``getresuid``/``getresgid``/``getgroups`` must show exactly the target, so
a silently failed call (the C server never called setgroups) cannot go unnoticed.
"""

from __future__ import annotations

import ctypes
import os

PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 38, 39  # linux/prctl.h
EXIT_PRIVDROP = 66  # the worker's own exit status: procmgr backs off instead of respawning
# loaded once, in the zygote: dlopen and the symbol lookup in a new worker cost ~0.3 ms of
# copy-on-write faults on the session's path
_LIBC = ctypes.CDLL(None, use_errno=True)


class PrivDropError(Exception):
    pass


def drop(uid: int, gid: int, home: str) -> None:
    if uid == 0 or gid == 0:
        raise PrivDropError("refusing to run a worker as UID 0 or GID 0")
    no_new_privs()
    was_root = os.geteuid() == 0
    if was_root:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    elif (os.getuid(), os.getgid()) != (uid, gid):
        raise PrivDropError("not root: can only run a worker as the current user and group")
    verify(uid, gid, no_groups=was_root)
    os.chdir(home)
    os.umask(0o077)


def no_new_privs() -> None:
    """No execve of ours (the indexer, anything a library spawns) can gain privileges again:
    setuid binaries and file capabilities stop working for the worker and its children.
    A spare sets it before its rehearsal; the drop sets and checks it again (a no-op then)."""
    libc = _LIBC
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise PrivDropError(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1:
        raise PrivDropError("no_new_privs did not stick")


def verify(uid: int, gid: int, *, no_groups: bool) -> None:
    """Raise unless real, effective and saved IDs are the target and root cannot come back.

    ``no_groups`` is False only in --dev without root, where the worker is the user's own
    process and keeps the user's groups.
    """
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise PrivDropError("credentials are not what was asked for")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PrivDropError("could regain root")
    if no_groups and os.getgroups():
        raise PrivDropError("supplementary groups remain")
