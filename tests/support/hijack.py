"""Become a compromised worker: take over a real worker's channel (root only).

No test hook exists in the procmgr or the worker. The test duplicates the worker's end of its
socketpair out of the running process (``pidfd_getfd``, as a debugger would) and SIGSTOPs the
worker, so every byte the procmgr receives on that channel from then on is the test's. The
procmgr cannot tell the difference: that is the point.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import struct
from pathlib import Path

SYS_PIDFD_GETFD = 438  # x86_64 and aarch64 (the generic syscall table) alike
_libc = ctypes.CDLL(None, use_errno=True)


def steal_fd(pid: int, fd: int) -> int:
    """A duplicate, in this process, of file descriptor ``fd`` of process ``pid``."""
    pidfd = os.pidfd_open(pid)
    try:
        ours = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if ours < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"pidfd_getfd({pid}, {fd}): {os.strerror(err)}")
        return ours
    finally:
        os.close(pidfd)


def _peer_pid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]


def worker_channel(worker_pid: int, procmgr_pid: int) -> socket.socket:
    """The worker's end of its channel: the Unix socket whose peer is the procmgr (which made
    the socketpair); then the worker is stopped, so it reads and writes nothing more."""
    for entry in sorted(Path(f"/proc/{worker_pid}/fd").iterdir(), key=lambda p: int(p.name)):
        if not os.readlink(entry).startswith("socket:"):
            continue
        sock = socket.socket(fileno=steal_fd(worker_pid, int(entry.name)))
        if sock.family == socket.AF_UNIX and _peer_pid(sock) == procmgr_pid:
            os.kill(worker_pid, signal.SIGSTOP)
            sock.settimeout(30.0)
            return sock
        sock.close()
    raise LookupError(f"worker {worker_pid} holds no channel to procmgr {procmgr_pid}")
