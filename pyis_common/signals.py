"""Signals only record; the main loop acts.

The handler appends the number to a queue, and ``signal.set_wakeup_fd`` writes a byte to a
socketpair that sits in the same ``zmq.Poller`` as the sockets (gunicorn's arbiter pattern), so
a signal wakes the loop without any logic running inside the handler.
"""

from __future__ import annotations

import collections
import signal
import socket


class SignalQueue:
    def __init__(self, signums: tuple[int, ...]) -> None:
        self.pending: collections.deque[int] = collections.deque()
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        for signum in signums:
            signal.signal(signum, self._record)

    def _record(self, signum: int, _frame: object) -> None:
        self.pending.append(signum)

    @property
    def fd(self) -> int:
        """Put this in the poller; readable means a signal arrived."""
        return self._r.fileno()

    def drain(self) -> list[int]:
        try:
            while self._r.recv(4096):
                pass
        except BlockingIOError:
            pass
        out = list(self.pending)
        self.pending.clear()
        return out

    def close(self) -> None:
        """In a forked child: give the socketpair back, before its fd numbers are reused."""
        signal.set_wakeup_fd(-1)
        self._r.close()
        self._w.close()
