"""``is-cli follow DIR -o newest.jpg``: keep the newest frame of a collection on disk.

A loop of ``newest`` long-polls (one request, one reply each). Every frame is written to a
temporary name in the output's directory and renamed over the output, so a viewer that reloads
the file never reads half a JPEG. One line per frame on stdout: sequence number, file, frame
and its latency (from the worker seeing the frame complete to the JPEG renamed into place
here). Ctrl-C ends it with status 0 after the current request.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from iscli import client
from iscli.client import NoReply, Settings
from pyis_common.errors import parse_wire_text

RETRYABLE = frozenset({"busy", "timeout", "incomplete"})  # ask again after a pause
PAUSE_S = 0.5


def replace_atomically(path: str, data: bytes) -> None:
    """``data`` at ``path`` by ``rename(2)``: a reader sees the old file or the new one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def follow(
    settings: Settings,
    job: dict[str, Any],
    output: str,
    count: int,
    show: Callable[[str], None],
    warn: Callable[[str], None],
    exit_codes: dict[str, int],
) -> int:
    """Poll until ``count`` frames were written (0: until Ctrl-C); the exit status. ``show``
    and ``warn`` print to stdout and stderr, made safe for a terminal (file names are data)."""
    seq, shown = 0, 0
    try:
        while count <= 0 or shown < count:
            frames = client.request(
                settings.endpoint, job | {"seq": seq}, settings.timeout, settings.retries
            )
            if frames[0] != b"":
                code, sentence = parse_wire_text(frames[0])
                warn(f"{code}: {sentence}")
                if code not in RETRYABLE:
                    return exit_codes[code]
                time.sleep(PAUSE_S)
                continue
            newest = _newest(frames)
            if newest is None:
                continue  # nothing new within the wait: ask again
            if len(frames) < 4:
                warn("internal: the reply has no image")
                return exit_codes["internal"]
            t0 = time.perf_counter()
            replace_atomically(output, frames[3])
            latency = float(newest.get("age_ms", 0.0)) + (time.perf_counter() - t0) * 1000
            seq, shown = int(newest["seq"]), shown + 1
            show(f"{seq} {newest.get('fn')} frame {newest.get('frame')} {latency:.1f} ms")
    except NoReply as exc:
        warn(f"{exc}; is the server running?")
        return exit_codes["no_reply"]
    except KeyboardInterrupt:
        warn(f"stopped after {shown} frames")
    except OSError as exc:
        warn(f"cannot write {output}: {exc.strerror}")
        return exit_codes["local"]
    return 0


def _newest(frames: list[bytes]) -> dict[str, Any] | None:
    try:
        job = json.loads(frames[1])
    except (IndexError, ValueError):
        return None
    newest = job.get("newest") if isinstance(job, dict) else None
    if isinstance(newest, dict) and type(newest.get("seq")) is int:
        return newest
    return None
