"""The ``index`` job: run the configured indexer on one or two images, safely.

The C server pasted file names into a shell script (injection) and published progress to any
address the client named (SSRF). Here the indexer is an argv list from the procmgr's config,
never a shell; the image paths pass the same ESAF-home policy as every other job and are handed
over as separate arguments after ``--``; it runs as the worker's (dropped) user with a
minimal environment, a time limit and a cap on what it may print, in the run's results folder
inside the ESAF home (worker/results.py), with a private HOME and TMPDIR removed afterwards.
Its stderr lines are progress (relayed by the procmgr to a channel derived from the session);
its stdout is the JSON result.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyis_common.config import ProcmgrConfig
from pyis_common.errors import Internal, Timeout, Unsupported
from pyis_common.protocol import MAX_PROGRESS_LINE  # a progress bar needs a short line
from worker import results

MAX_PROGRESS_LINES = 10_000
SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class IndexSettings:
    command: tuple[str, ...] = ()  # argv prefix; the image paths follow "--"
    timeout_s: float = ProcmgrConfig.index_timeout_s  # the declared default, not a second one
    max_output: int = 1 << 20  # bytes of JSON result we accept


def require(settings: IndexSettings) -> None:
    if not settings.command:
        raise Unsupported("indexing is not configured on this image server")


def run(
    settings: IndexSettings,
    paths: list[str],
    progress: Callable[[str], None],
    output: results.Folder | None = None,
    options: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """The indexer's JSON result; ``paths`` are already resolved inside the ESAF home. With
    ``output`` the indexer runs in that results folder and writes as the ESAF's rules say;
    ``options`` (the frames asked for) go before the ``--`` that precedes the paths."""
    require(settings)
    workdir = tempfile.mkdtemp(prefix="pyis-index-")
    try:
        proc = subprocess.Popen(
            [*settings.command, *options, "--", *paths],
            cwd=output.path if output is not None else workdir,  # the child's /proc/self/fd
            pass_fds=(output.fd,) if output is not None else (),
            umask=results.FILE_UMASK,
            env=SAFE_ENV | {"HOME": workdir, "TMPDIR": workdir},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # so a timeout kills the indexer's children too
        )
        relay = threading.Thread(target=_relay, args=(proc, progress), daemon=True)
        relay.start()
        out = _read_capped(proc, settings)
        relay.join(5.0)
    except OSError as exc:
        raise Internal(f"cannot run the indexer: {exc.strerror}") from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if proc.returncode != 0:
        raise Internal(f"the indexer failed (exit status {proc.returncode})")
    try:
        result = json.loads(out)
    except ValueError:
        raise Internal("the indexer did not print a JSON result") from None
    return result if isinstance(result, dict) else {"result": result}


def _read_capped(proc: subprocess.Popen[bytes], settings: IndexSettings) -> bytes:
    """stdout up to the cap, within the time limit; otherwise kill the whole session."""
    chunks: list[bytes] = []
    size = 0
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _kill(proc)

    timer = threading.Timer(settings.timeout_s, expire)
    timer.start()
    try:
        while chunk := proc.stdout.read(65536) if proc.stdout else b"":
            size += len(chunk)
            if size > settings.max_output:
                _kill(proc)
                proc.wait()
                raise Internal("the indexer printed more than the allowed output")
            chunks.append(chunk)
        proc.wait()
    finally:
        timer.cancel()
    if expired.is_set():
        raise Timeout(f"indexing took longer than {settings.timeout_s:g} s")
    return b"".join(chunks)


def _relay(proc: subprocess.Popen[bytes], progress: Callable[[str], None]) -> None:
    for count, raw in enumerate(proc.stderr or ()):
        if count < MAX_PROGRESS_LINES:
            line = raw.decode("utf-8", "replace").strip()[:MAX_PROGRESS_LINE]
            if line:
                progress(line)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
