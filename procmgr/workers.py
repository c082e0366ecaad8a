"""Workers by (user, ESAF), started through the zygote (procmgr/zygoteclient.py).

A worker is known by the procmgr end of its socketpair. Its messages are decoded incrementally
(a worker that sends half a message cannot stall the procmgr), and EOF on that socket is how we
learn it died, whatever the cause: the zygote's ``exited`` report only adds the exit status.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from procmgr.identity import Identity
from procmgr.workerlog import StderrLog
from procmgr.zygoteclient import SEND_TIMEOUT_S, ZygoteClient
from pyis_common import workerchannel
from pyis_common.config import ProcmgrConfig
from pyis_common.errors import Busy

log = logging.getLogger("procmgr.workers")
RECV_CHUNK = 1 << 20  # read into one buffer kept for the loop's life, never a fresh 1 MiB
CRASH_WINDOW_S = 60.0
FLAP_MIN_SERVED = 10


@dataclass
class Worker:
    ident: Identity
    sock: socket.socket
    started: float
    decoder: workerchannel.Decoder = field(default_factory=workerchannel.Decoder)
    pid: int = 0
    ready: bool = False  # it said so: started, privileges dropped
    configured: bool = False  # sent its config: jobs go straight to its channel from now on
    last_used: float = 0.0
    last_heard: float = 0.0  # monotonic time of the last bytes from the worker
    served: int = 0  # replies received from it
    inflight: set[int] = field(default_factory=set)
    queued: list[bytes] = field(default_factory=list)
    cache: dict[str, int] = field(default_factory=dict)  # the worker's last reported counters
    partial_since: float | None = None  # monotonic start of a message not yet complete
    stderr: StderrLog | None = None  # the read end of the worker's own stderr pipe

    @property
    def name(self) -> str:
        return f"worker(uid={self.ident.uid}, esaf={self.ident.esaf}, pid={self.pid})"


class Workers:
    def __init__(self, cfg: ProcmgrConfig, zygote: ZygoteClient) -> None:
        self.cfg = cfg
        self.zygote = zygote
        self.by_key: dict[str, Worker] = {}
        self.by_fd: dict[int, Worker] = {}
        self.by_stderr: dict[int, Worker] = {}
        self.backoff: dict[tuple[int, int], float] = {}
        self.start_ms: collections.deque[float] = collections.deque(maxlen=100)
        self.crashes: dict[tuple[int, int], list[float]] = {}
        # every worker's channel is read into this (a recv of a fresh 1 MiB cost each reply an
        # mmap, page faults and a munmap); the decoder copies out what it keeps
        self.scratch = bytearray(RECV_CHUNK)

    @staticmethod
    def key_of(ident: Identity) -> str:
        return f"{ident.uid}:{ident.esaf}"

    def get(self, ident: Identity) -> Worker:
        """The worker for (user, ESAF), started if needed; Busy while it is backing off."""
        worker = self.by_key.get(self.key_of(ident))
        if worker is not None:
            return worker
        until = self.backoff.get(ident.key, 0.0)
        if time.monotonic() < until:
            raise Busy("the worker for this session failed to start; try again shortly")
        if len(self.by_key) >= self.cfg.max_workers:
            log.warning("max_workers (%d) reached; a new session waits", self.cfg.max_workers)
            raise Busy("the image server has too many sessions open; try again later")
        return self._start(ident)

    def _start(self, ident: Identity) -> Worker:
        ours, theirs = socket.socketpair()
        stderr_r, stderr_w = os.pipe()
        key = self.key_of(ident)
        try:
            self.zygote.spawn(key, ident, theirs.fileno(), stderr_w, self.cfg)
        except OSError as exc:  # the zygote is stuck or gone; handle_zygote hears of it
            ours.close()
            os.close(stderr_r)
            log.error("cannot ask the zygote for a worker: %s", exc)
            raise Busy("could not start a worker for this session; try again shortly") from None
        finally:
            theirs.close()
            os.close(stderr_w)
        ours.settimeout(SEND_TIMEOUT_S)
        worker = Worker(
            ident=ident,
            sock=ours,
            started=time.monotonic(),
            decoder=workerchannel.Decoder(self.cfg.worker_max_message_bytes),
            stderr=StderrLog(stderr_r),
        )
        self.by_key[key] = worker
        self.by_fd[ours.fileno()] = worker
        self.by_stderr[stderr_r] = worker
        return worker

    def read_stderr(self, worker: Worker) -> None:
        """Log what the worker wrote to its stderr; at EOF stop polling the pipe."""
        if worker.stderr is not None and not worker.stderr.read(worker.name):
            self._close_stderr(worker)

    def _close_stderr(self, worker: Worker) -> None:
        if worker.stderr is not None:
            self.by_stderr.pop(worker.stderr.fd, None)
            worker.stderr.close()
            worker.stderr = None

    def submit(
        self, worker: Worker, rid: int, job: dict[str, Any], paths: tuple[str, ...] | None = None
    ) -> None:
        """``paths``: a path-bound token's prefixes, beside the job where no client can set them."""
        header: dict[str, Any] = {"t": workerchannel.MSG_JOB, "id": rid, "job": job}
        if paths is not None:
            header["paths"] = list(paths)
        data = workerchannel.encode(header)
        worker.inflight.add(rid)
        worker.last_used = time.monotonic()
        if worker.configured:
            worker.sock.sendall(data)
        else:
            worker.queued.append(data)

    def configure(self, worker: Worker, config: dict[str, Any]) -> None:
        """Send the worker its private settings (the cache credential), then the queued jobs
        (OSError: gone). Done as soon as the credential is known, usually before the worker is
        ready: the channel holds them until it reads, so neither waits for the worker's ready
        (the round trip that saves was mostly hidden behind the worker starting its first job
        thread: end to end a new session is no faster here, bench/interactive.py), and the loop
        never waits for a cache user being made (it did, up to 0.25 s). Only the worker
        ever reads that channel: its other end goes to the zygote and on to the forked child,
        which reads nothing before it has dropped privileges."""
        worker.configured = True
        self.send_config(worker, config)
        for data in worker.queued:
            worker.sock.sendall(data)
        worker.queued.clear()

    def on_ready(self, worker: Worker, header: dict[str, Any]) -> None:
        """Note and log the worker's start."""
        worker.ready = True
        start_ms = (time.monotonic() - worker.started) * 1000
        self.start_ms.append(round(start_ms, 3))
        log.info(
            "%s ready in %.1f ms: uid=%s gid=%s groups=%s",
            worker.name,
            start_ms,
            header.get("uid"),
            header.get("gid"),
            str(header.get("groups"))[:200],
        )

    def send_config(self, worker: Worker, config: dict[str, Any]) -> None:
        """The worker's settings and credential, on its private channel (OSError: gone)."""
        worker.sock.sendall(workerchannel.encode({"t": workerchannel.MSG_CONFIG, **config}))

    def receive(self, worker: Worker) -> list[tuple[dict[str, Any], list[bytes]]]:
        """Whole messages now available; EOFError when the worker is gone, WireError when it
        announced a message over ``worker_max_message_bytes``."""
        n = worker.sock.recv_into(self.scratch)
        if not n:
            raise EOFError(f"{worker.name} closed its channel")
        now = worker.last_heard = time.monotonic()
        with memoryview(self.scratch) as view:
            messages = worker.decoder.feed(view[:n])
        if not worker.decoder.buffered:
            worker.partial_since = None
        elif messages or worker.partial_since is None:
            worker.partial_since = now  # a new message began in this chunk
        return messages

    def on_spawned(self, header: dict[str, Any]) -> Worker | None:
        """Note the worker's pid; the worker itself when the zygote could not fork it."""
        worker = self.by_key.get(str(header.get("key")))
        if worker is None or worker.pid:
            return None
        pid = header.get("pid")
        if type(pid) is int and pid > 0:
            worker.pid = pid  # often after its ready message: two channels, no order
            return None
        return None if worker.ready else worker

    def on_exited(self, header: dict[str, Any]) -> None:
        pid, code = int(header.get("pid", 0)), int(header.get("code", 0))
        log.info("worker pid %d exited with %s", pid, code)

    def remove(self, worker: Worker, *, lost: bool = False) -> set[int]:
        """Forget a worker; returns its unanswered request ids.

        Closing its channel is enough for a healthy worker (it exits on EOF after finishing
        its jobs); a lost one (crashed, hung, stopped, lying) is SIGKILLed, since a stopped
        process would never act on SIGTERM. One that never became ready is backed off.
        """
        self.by_key.pop(self.key_of(worker.ident), None)
        self.by_fd.pop(worker.sock.fileno(), None)
        worker.sock.close()
        if worker.stderr is not None:
            worker.stderr.drain(worker.name)
            self._close_stderr(worker)
        if lost and worker.pid:
            try:
                os.kill(worker.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        now = time.monotonic()
        if not worker.ready:
            self.backoff[worker.ident.key] = now + self.cfg.worker_backoff_s
        elif lost and worker.served < FLAP_MIN_SERVED:
            self._count_crash(worker.ident.key, now)
        unanswered = set(worker.inflight)
        worker.inflight.clear()
        return unanswered

    def _count_crash(self, key: tuple[int, int], now: float) -> None:
        """No respawn storms (circus's flapping): a worker that dies before it has served
        FLAP_MIN_SERVED requests is flapping (a poison file, a broken install); too many of
        those in a minute back the (user, ESAF) off. A worker killed after real work (the OOM
        killer, an operator) is simply replaced."""
        recent = [t for t in self.crashes.get(key, []) if now - t < CRASH_WINDOW_S] + [now]
        self.crashes[key] = recent
        if len(recent) > self.cfg.worker_max_crashes:
            self.backoff[key] = now + self.cfg.worker_backoff_s
            log.warning("worker for uid %d, ESAF %d keeps crashing; backing off", *key)

    def stale(self, now: float) -> list[tuple[Worker, str]]:
        """Workers to retire: never became ready in time, stuck halfway through a message (a
        trickle keeps it heard from, never done), or idle too long."""
        out = []
        for worker in list(self.by_key.values()):
            partial_s = now - worker.partial_since if worker.partial_since is not None else 0.0
            if partial_s > self.cfg.worker_message_timeout_s:
                out.append((worker, f"sent half a message {partial_s:.1f} s ago"))
            elif not worker.ready and now - worker.started > self.cfg.worker_start_timeout_s:
                out.append((worker, "start timeout"))
            elif (
                worker.ready
                and not worker.inflight
                and now - worker.last_used > self.cfg.worker_idle_s
            ):
                out.append((worker, "idle"))
        return out

    def forget_old_failures(self, now: float) -> None:
        """Back-offs and crash times past their window: a procmgr runs for months, and one
        entry per (user, ESAF) that ever failed would otherwise stay for good."""
        for key in [k for k, until in self.backoff.items() if until <= now]:
            del self.backoff[key]
        for key in [k for k, times in self.crashes.items() if now - times[-1] >= CRASH_WINDOW_S]:
            del self.crashes[key]

    def describe(self) -> list[dict[str, Any]]:
        """For the status request."""
        return [
            {
                "pid": w.pid,
                "uid": w.ident.uid,
                "esaf": w.ident.esaf,
                "ready": w.ready,
                "in_flight": len(w.inflight),
                "cache": w.cache,
            }
            for w in self.by_key.values()
        ]

    def cache_totals(self) -> dict[str, int]:
        """Each worker's last reported cache counters, summed."""
        totals: dict[str, int] = {}
        for worker in self.by_key.values():
            for name, value in worker.cache.items():
                totals[name] = totals.get(name, 0) + value
        return totals

    def all(self) -> list[Worker]:
        return list(self.by_key.values())
