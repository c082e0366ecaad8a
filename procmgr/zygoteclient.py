"""The procmgr's side of the zygote: start it (before any zmq.Context exists), ask it for
workers, hear what it reports, stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

from procmgr.identity import Identity
from pyis_common import workerchannel
from pyis_common.config import ProcmgrConfig
from pyis_common.workersettings import for_workers

ZYGOTE_START_TIMEOUT_S = 60.0  # importing numpy/fabio/h5py cold from disk can take seconds
SEND_TIMEOUT_S = 1.0  # a worker that does not take a tiny job within this is stuck
MIN_WORKER_MEMORY = 2 << 30  # address space for a 16M Eiger frame, its pyramid and the LRU


def zygote_environment(pythonpath: str) -> dict[str, str]:
    """All a worker's environment: nothing of the procmgr's (its config, its secrets)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",  # the indexer's helpers, if it has any
        "LANG": "C.UTF-8",
        "PYTHONPATH": pythonpath,
        "OPENBLAS_NUM_THREADS": "1",  # one worker, a few threads: no thread pool per BLAS call
        "OMP_NUM_THREADS": "1",
    }


def worker_memory_bytes(cfg: ProcmgrConfig) -> int:
    """The worker's RLIMIT_AS: as configured, or a quarter of this host's RAM, so that a
    few runaway decoders fail with MemoryError before the host runs out."""
    if cfg.worker_memory_bytes > 0:
        return cfg.worker_memory_bytes
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(MIN_WORKER_MEMORY, ram // 4)


class ZygoteClient:
    """Start the zygote (before any zmq.Context exists) and talk to it."""

    def __init__(self, spares: int = 0) -> None:
        ours, theirs = socket.socketpair()
        # our own tree first on the path: a daemon runs from "/", where "-m" finds nothing
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "procmgr.zygote", str(theirs.fileno()), str(spares)],
            pass_fds=[theirs.fileno()],
            env=zygote_environment(path),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        ours.settimeout(ZYGOTE_START_TIMEOUT_S)
        self.chan = workerchannel.Channel(ours)
        msg = self.chan.recv()
        if msg is None or msg[0].get("t") != workerchannel.MSG_READY:
            raise RuntimeError("the zygote did not start")
        ours.settimeout(SEND_TIMEOUT_S)

    @property
    def fd(self) -> int:
        return self.chan.sock.fileno()

    def spawn(self, key: str, ident: Identity, fd: int, stderr_fd: int, cfg: ProcmgrConfig) -> None:
        spec = {
            "t": workerchannel.MSG_SPAWN,
            "key": key,
            "uid": ident.uid,
            "gid": ident.gid,
            "home": ident.home,
            "esaf": ident.esaf,
            "settings": for_workers(cfg),  # pyis_common/workersettings.py
            "memory_bytes": worker_memory_bytes(cfg),
        }
        self.chan.send_fds(spec, [fd, stderr_fd])

    def read(self) -> list[dict[str, Any]]:
        """Messages the zygote sent (``spawned``/``exited``); raises EOFError if it died."""
        out = []
        while True:
            msg = self.chan.recv()
            if msg is None:
                raise EOFError("the zygote exited")
            out.append(msg[0])
            if not self.chan.has_pending():
                return out

    def stop(self, timeout_s: float) -> int:
        try:
            self.chan.send({"t": workerchannel.MSG_STOP})
        except OSError:
            pass
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
