"""Spare workers: children of the zygote forked ahead, each waiting for a spawn order.

A new session then costs the hand-off of its order (the spawn header and the two descriptors,
over the spare's own socketpair), the privilege drop and the worker's start; not a fork of the
zygote (3-4 ms of page-table copying here), which happens REFILL_DELAY_S after the hand-off, off
the session's path (forked and rehearsed at once, the successor took a core from the new
worker: its config and first job waited 5-10 ms). A spare is the zygote's clean state and
nothing more: it is forked after the warm-up and before any order, so it holds no identity,
no user data and no credential (those come only with its order and, the credential, from the
procmgr on the worker's own channel); its
environment and memory are the zygote's; it closes the zygote's descriptors (channel, signal
socketpair, the other spares' sockets) at once and sets ``no_new_privs`` before anything else.
Its rehearsal runs on threads that are joined before it says ready, so that a worker's first
threads find their malloc arena already faulted in (worker/warmup.py ``rehearse_on_threads``); no
thread is left when the order comes, and the drop runs single-threaded as in a fork.

A spare first rehearses a worker's start and first job (worker/warmup.py), then says ready and
waits: the zygote hands orders to ready spares only (one still rehearsing is no faster than a
fork). It rehearses at the usual priority: with spares at SCHED_IDLE, forks on demand took
12-150 ms instead of ~8 here (a spare preempted while holding a kernel lock it shares with the
zygote, such as the anon_vma of their shared memory, stalls it). It reads one order; EOF (the
zygote is gone or retires it) ends it. A spare that dies unused is replaced, at most once per
``RETRY_S``; so is one the zygote could not fork (the task limit): until then a session forks.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyis_common import workerchannel

RETRY_S = 1.0  # after a failed fork or a spare that died unused
REFILL_DELAY_S = 0.05  # after a hand-off: the session's start and first job come first
NAME = b"pyis-spare"  # its /proc/PID/comm while it waits, for ps and the tests


@dataclass
class Spare:
    pid: int
    chan: workerchannel.Channel  # the zygote's end of the spare's socketpair
    ready: bool = False  # rehearsed and waiting for an order


class Spares:
    """The zygote's spares: at most ``wanted``, refilled after each one handed out."""

    def __init__(self, wanted: int) -> None:
        self.wanted = max(0, wanted)
        self.waiting: list[Spare] = []
        self.unused: set[int] = set()  # spares alive or not yet reaped that never had an order
        self.retry_at = 0.0

    def missing(self, now: float) -> bool:
        """Whether the zygote should fork a spare now."""
        return len(self.waiting) < self.wanted and now >= self.retry_at

    def wait_s(self, now: float) -> float | None:
        """How long the zygote may sleep before it should fork one (None: no limit)."""
        if len(self.waiting) >= self.wanted:
            return None
        return max(0.0, self.retry_at - now)

    def add(self, pid: int, sock: socket.socket) -> None:
        self.waiting.append(Spare(pid, workerchannel.Channel(sock)))
        self.unused.add(pid)

    def fork_failed(self, exc: OSError, now: float) -> None:
        self.retry_at = now + RETRY_S
        print(f"zygote: cannot fork a spare worker: {exc.strerror}", file=sys.stderr, flush=True)

    def socks(self) -> list[socket.socket]:
        """Readable when a spare says ready, and at its EOF (it died, or was killed, unused)."""
        return [s.chan.sock for s in self.waiting]

    def heard(self, sock: socket.socket, now: float) -> None:
        for spare in [s for s in self.waiting if s.chan.sock is sock]:
            try:
                msg = spare.chan.recv()
            except (OSError, workerchannel.WireError):
                msg = None
            if msg is not None and msg[0].get("t") == workerchannel.MSG_READY and not spare.ready:
                spare.ready = True
                continue
            self._drop(spare)
            self.retry_at = now + RETRY_S

    def forget(self, pid: int) -> bool:
        """A reaped child: True if it was a spare that never got an order (not a worker, so
        nobody is told of its exit)."""
        if pid not in self.unused:
            return False
        self.unused.discard(pid)
        for spare in [s for s in self.waiting if s.pid == pid]:
            self._drop(spare)
            self.retry_at = time.monotonic() + RETRY_S
        return True

    def hand(self, order: dict, fds: list[int]) -> int | None:
        """Give ``order`` and ``fds`` to the oldest live spare; its pid, or None if none took
        it (then the zygote forks). Our end is closed: the spare is a worker from now on."""
        while ready := [s for s in self.waiting if s.ready]:
            spare = ready[0]
            self.waiting.remove(spare)
            try:
                spare.chan.send_fds(order, fds)
            except OSError:  # it died and is not reaped yet
                continue
            finally:
                spare.chan.sock.close()
            self.unused.discard(spare.pid)
            self.retry_at = max(self.retry_at, time.monotonic() + REFILL_DELAY_S)
            return spare.pid
        return None

    def close(self) -> None:
        """Our ends closed: waiting spares exit at EOF. In a forked child: the zygote's copies,
        which are no business of a worker or another spare."""
        for spare in self.waiting:
            spare.chan.sock.close()
        self.waiting.clear()
        self.unused.clear()

    def _drop(self, spare: Spare) -> None:
        self.waiting.remove(spare)
        spare.chan.sock.close()


def wait_for_order(
    sock: socket.socket, rehearse: Callable[[], None]
) -> tuple[dict | None, list[int]]:
    """In the spare: ``rehearse``, say ready, block until the zygote hands us an order; (None,
    []) at EOF."""
    chan = workerchannel.Channel(sock)
    rehearse()
    chan.send({"t": workerchannel.MSG_READY})
    name = _rename(NAME)
    msg, fds = chan.recv_with_fds(2)
    sock.close()
    _rename(name)  # a worker is named as one forked on demand is
    if msg is None or msg[0].get("t") != workerchannel.MSG_SPAWN or len(fds) != 2:
        return None, fds
    return msg[0], fds


def _rename(name: bytes) -> bytes:
    """Set our comm; the previous one."""
    try:
        with open("/proc/self/comm", "r+b", buffering=0) as comm:
            old = comm.read().rstrip(b"\n")
            comm.seek(0)
            comm.write(name)
    except OSError:
        return name
    return old
