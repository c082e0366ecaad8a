"""The zygote: a pre-imported, secret-free process that forks workers.

The procmgr starts it once (``python -m procmgr.zygote FD``) before it creates any
``zmq.Context``, reads a key or opens Redis, so its memory holds numpy, fabio and the encoders
but no secret and no ZeroMQ state. For each ``spawn`` it forks; the child drops privileges and
serves the socket it was handed (SCM_RIGHTS), and never returns (it ends in ``os._exit``). A new
session therefore costs a fork and a few syscalls, not an interpreter start; with spares
(procmgr/spares.py: ``worker_spares``) not even the fork: a child forked ahead takes the order,
and the zygote forks its successor after answering.

The zygote reaps its children and reports every exit to the procmgr. When the procmgr goes
away (EOF) or says ``stop`` it terminates its children (SIGTERM, a deadline, SIGKILL) and exits.
"""

from __future__ import annotations

import fcntl
import os
import resource
import select
import signal
import socket
import sys
import time
import traceback

from procmgr import privdrop
from procmgr.spares import Spares, wait_for_order
from pyis_common import workerchannel
from pyis_common.signals import SignalQueue
from worker import main as worker_main  # the pre-import: everything a worker needs
from worker import warmup

STOP_GRACE_S = 5.0  # workers finish in-flight jobs within this, then are killed
EXIT_CRASH = 70  # EX_SOFTWARE: an unexpected error in the child
CHANNEL_FD = 3  # the worker's channel, after 0, 1, 2


class Zygote:
    def __init__(self, chan: workerchannel.Channel, spares: int = 0) -> None:
        self.chan = chan
        self.children: set[int] = set()
        self.signals = SignalQueue((signal.SIGCHLD, signal.SIGTERM))
        self.spares = Spares(spares)

    def run(self) -> int:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the procmgr's to handle
        warmup.tune_malloc()  # inherited by every worker
        warmup.warm()
        warmup.freeze()
        self.refill()
        self.chan.send({"t": workerchannel.MSG_READY, "pid": os.getpid()})
        while True:
            spares = self.spares.socks()
            wait = 0 if self.chan.has_pending() else self.spares.wait_s(time.monotonic())
            watched: list[socket.socket | int] = [self.chan.sock, self.signals.fd, *spares]
            readable, _, _ = select.select(watched, [], [], wait)
            if self.chan.has_pending():
                readable.append(self.chan.sock)
            if self.signals.fd in readable:
                if signal.SIGTERM in self.signals.drain():
                    break
                self.reap()
            for sock in (s for s in spares if s in readable):  # a spare ready before an order
                self.spares.heard(sock, time.monotonic())
            if self.chan.sock in readable and not self.handle_message():
                break
            if not self.chan.has_pending():  # after the answer: off the new session's path
                self.refill()
        self.spares.close()
        self.stop_children()
        return 0

    def refill(self) -> None:
        """Fork spares up to the number wanted (a failure waits spares.RETRY_S)."""
        while self.spares.missing(time.monotonic()):
            ours, theirs = socket.socketpair()
            try:
                pid = os.fork()
            except OSError as exc:
                ours.close()
                theirs.close()
                self.spares.fork_failed(exc, time.monotonic())
                return
            if pid == 0:
                ours.close()
                self._spare(theirs)  # never returns
            theirs.close()
            self.children.add(pid)
            self.spares.add(pid, ours)

    def handle_message(self) -> bool:
        try:
            msg, fds = self.chan.recv_with_fds(2)
        except (OSError, workerchannel.WireError):
            return False
        if msg is None or msg[0].get("t") != workerchannel.MSG_SPAWN:
            for fd in fds:
                os.close(fd)
            return False
        header = msg[0]
        reply = {"t": workerchannel.MSG_SPAWNED, "key": header.get("key"), "pid": 0}
        try:
            if len(fds) != 2:
                reply["error"] = "a spawn needs a channel and a stderr pipe"
            else:
                pid = self.spares.hand(header, fds)
                reply["pid"] = pid if pid is not None else self.spawn(header, fds[0], fds[1])
        except OSError as exc:  # EAGAIN at the task limit, ENOMEM: this worker, not us
            reply["error"] = f"fork failed: {exc.strerror}"
        try:
            # the reply first: the procmgr must hear why before it sees the channel's EOF
            self.chan.send(reply)
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def spawn(self, spec: dict, fd: int, stderr_fd: int) -> int:
        pid = os.fork()
        if pid == 0:
            self._child(spec, fd, stderr_fd)  # never returns
        self.children.add(pid)
        return pid

    def _leave_zygote(self) -> None:
        """In a new child: default signals, and none of the zygote's descriptors."""
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        self.signals.close()
        self.chan.sock.close()
        self.spares.close()  # our copies of the other spares' sockets

    def _spare(self, sock: socket.socket) -> None:
        """A spare: wait for an order, then become its worker (procmgr/spares.py)."""
        code = EXIT_CRASH
        try:
            self._leave_zygote()
            privdrop.no_new_privs()  # before the rehearsal's threads: none could ever regain root
            spec, fds = wait_for_order(sock, warmup.rehearse_on_threads)
            if spec is None:
                for fd in fds:
                    os.close(fd)
                code = 0  # retired (or the zygote is gone) before any order
            else:
                self._child(spec, fds[0], fds[1], left=True)  # never returns
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    def _child(self, spec: dict, fd: int, stderr_fd: int, left: bool = False) -> None:
        code = EXIT_CRASH
        try:
            if not left:
                self._leave_zygote()
            fd = isolate(fd, stderr_fd)
            limit = int(spec.get("memory_bytes") or 0)
            if limit > 0:  # a runaway decoder fails with MemoryError, not the OOM killer
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            privdrop.drop(int(spec["uid"]), int(spec["gid"]), str(spec["home"]))
            code = worker_main.serve(fd, spec)
        except privdrop.PrivDropError as exc:
            print(f"worker: cannot drop privileges: {exc}", file=sys.stderr, flush=True)
            code = privdrop.EXIT_PRIVDROP
        except OSError as exc:
            print(f"worker: cannot start: {exc.strerror}", file=sys.stderr, flush=True)
            code = privdrop.EXIT_PRIVDROP
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            if self.spares.forget(pid):
                continue  # a spare that never was a worker: the procmgr never knew it
            try:
                self.chan.send({"t": workerchannel.MSG_EXITED, "pid": pid, "code": code})
            except OSError:
                pass

    def stop_children(self) -> None:
        """gunicorn's stop: SIGTERM, reap until a deadline, SIGKILL, reap."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.01)
        self._signal_all(signal.SIGKILL)
        while self.children:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self.children.discard(pid)

    def _signal_all(self, signum: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                self.children.discard(pid)


def isolate(channel_fd: int, stderr_fd: int) -> int:
    """Leave the child nothing of ours: stdin is /dev/null, stdout and stderr its own pipe to
    the procmgr, its channel fd CHANNEL_FD, and every other descriptor (our channel, the
    signal socketpair, the procmgr's log) closed. The channel's new number."""
    # first above every number we assign: a spare receives its two at the lowest free ones
    channel_fd = fcntl.fcntl(channel_fd, fcntl.F_DUPFD_CLOEXEC, CHANNEL_FD + 1)
    stderr_fd = fcntl.fcntl(stderr_fd, fcntl.F_DUPFD_CLOEXEC, CHANNEL_FD + 1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(stderr_fd, 1)
    os.dup2(stderr_fd, 2)
    os.dup2(channel_fd, CHANNEL_FD, inheritable=False)
    os.closerange(CHANNEL_FD + 1, max(os.sysconf("SC_OPEN_MAX"), 1 << 16))
    return CHANNEL_FD


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(argv[0]))
    spares = int(argv[1]) if len(argv) > 1 else 0
    return Zygote(workerchannel.Channel(sock), spares).run()


if __name__ == "__main__":
    sys.exit(main())
