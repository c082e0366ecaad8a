"""Start the real programs (redis-server, is-proxy, is-procmgr) and wait for readiness.

Used by ``is-dev`` and by the tests. Readiness is a line the program prints (``READY ...`` for
ours, redis's "Ready to accept connections"), never a sleep. A reader thread keeps draining
stdout afterwards so a chatty child cannot block on a full pipe.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

READY_TIMEOUT_S = 60.0  # the procmgr's zygote imports numpy/fabio/h5py: seconds when cold
STOP_TIMEOUT_S = 20.0


class StartError(RuntimeError):
    pass


class Proc:
    """A child process with a stdout reader that notices its ready line."""

    def __init__(
        self,
        argv: list[str],
        is_ready: Callable[[str], bool],
        stderr: IO[bytes] | int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self.ready_line: str | None = None
        self._ready = threading.Event()
        self._is_ready = is_ready
        self.stderr_path = getattr(stderr, "name", None)
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=stderr, env=env, start_new_session=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if len(self.lines) < 1000:
                self.lines.append(line)
            if self.ready_line is None and self._is_ready(line):
                self.ready_line = line
                self._ready.set()
        self._ready.set()  # EOF: the process ended; wait_ready() reports it

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        if not self._ready.wait(timeout_s) or self.ready_line is None:
            self.stop()
            tail = "\n".join(self.lines[-20:])
            if isinstance(self.stderr_path, str) and os.path.exists(self.stderr_path):
                with open(self.stderr_path, errors="replace") as fh:
                    tail += "\n" + "".join(fh.readlines()[-20:])
            raise StartError(f"{self.argv[0]} did not become ready:\n{tail}")
        return self.ready_line

    def fields(self) -> dict[str, str]:
        """``key=value`` pairs of a ``READY`` line."""
        words = (self.ready_line or "").split()[1:]
        return dict(w.split("=", 1) for w in words if "=" in w)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait, then SIGKILL the whole session as a last resort; the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return self.proc.wait()


def redis_server(
    workdir: Path,
    extra: list[str] | None = None,
    port: int | None = None,
    wrap: tuple[str, ...] = (),
) -> tuple[Proc, int]:
    """A private redis-server on a free loopback port (retried if another took the port), or
    on ``port`` (a restart in a test); ``wrap`` runs it inside, e.g. ``ip netns exec NAME``."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise StartError("redis-server is not installed (apt-get install redis-server)")
    for _ in range(20 if port is None else 1):
        try_port = port or random.randint(20000, 32000)  # below Linux's ephemeral range
        argv = [
            *wrap,
            exe,
            "--port",
            str(try_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--protected-mode",
            "yes",
            *(extra or []),
        ]
        proc = Proc(argv, lambda line: "Ready to accept connections" in line)
        try:
            proc.wait_ready(20.0)
            return proc, try_port
        except StartError as exc:
            if "Address already in use" not in str(exc):
                raise
    raise StartError("no free port for redis-server after 20 tries")


def pyis_command(module: str) -> list[str]:
    """Run our programs with this interpreter, so a venv needs no PATH."""
    return [sys.executable, "-m", module]
