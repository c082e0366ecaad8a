"""How ``is-cli`` shows what it got: the reply of each subcommand, progress, status.

Everything the server or a file name supplies passes through :func:`printable` first: a
secret never reaches the terminal and neither does a terminal escape.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TextIO

from iscli.args import scrub
from pyis_common.protocol import EXIT_LOCAL, EXIT_NO_REPLY, EXIT_OK


class BadReply(Exception):
    """A success reply without what the command needs: reported as ``internal``."""


def printable(text: str, hidden: list[str]) -> str:
    """Server or file-name text made safe for a terminal: secrets replaced, line breaks and tabs
    become blanks, every other non-printable (ESC and the rest of a terminal escape's control
    bytes, bidi overrides, ...) is dropped, so a file name cannot recolour or rewrite the screen.
    """
    text = scrub(text, hidden)
    return "".join(ch if ch.isprintable() else " " if ch.isspace() else "" for ch in text)


class ProgressBar:
    """Progress of a long job on stderr: one line redrawn in place on a terminal, plain lines
    otherwise (a log file wants every line, not carriage returns). Thread-safe, because the
    progress feed and the retry notices both write."""

    SPIN = "|/-\\"

    def __init__(self, stream: TextIO, hidden: list[str]) -> None:
        self.stream, self.hidden = stream, hidden
        self.tty = stream.isatty()
        self.t0 = time.monotonic()
        self.ticks, self.line = 0, "waiting"
        self.lock = threading.Lock()

    def __call__(self, message: dict[str, Any] | None) -> None:
        with self.lock:
            self.ticks += 1
            if message is not None and "progress" in message:  # not the closing "done"
                self.line = " ".join(printable(str(message["progress"]), self.hidden).split())
                if not self.tty:
                    print(f"is-cli: progress: {self.line[:500]}", file=self.stream, flush=True)
            if self.tty:
                elapsed = time.monotonic() - self.t0
                spin = self.SPIN[self.ticks % len(self.SPIN)]
                self.stream.write(f"\r\x1b[K{spin} {elapsed:5.0f} s  {self.line[:100]}")
                self.stream.flush()

    def note(self, text: str) -> None:
        with self.lock:
            prefix = "\r\x1b[K" if self.tty else ""
            print(f"{prefix}is-cli: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            with self.lock:
                self.stream.write("\r\x1b[K")
                self.stream.flush()


def write_jpeg(args: argparse.Namespace, frames: list[bytes], hidden: list[str]) -> int:
    if len(frames) < 4:
        raise BadReply("the reply has no image")
    try:
        if args.output == "-":
            sys.stdout.buffer.write(frames[3])
            sys.stdout.buffer.flush()
        else:
            with open(args.output, "wb") as fh:
                fh.write(frames[3])
    except OSError as exc:
        print(f"is-cli: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_LOCAL
    job = {k: v for k, v in _json(frames, 1).items() if k != "auth"}
    print(scrub(json.dumps(job, sort_keys=True), hidden), file=sys.stderr)
    return EXIT_OK


def print_json(args: argparse.Namespace, frames: list[bytes], hidden: list[str]) -> int:
    print(scrub(json.dumps(_json(frames, 2), indent=2, sort_keys=True), hidden))
    return EXIT_OK


def print_spots(args: argparse.Namespace, frames: list[bytes], hidden: list[str]) -> int:
    """``BIN COUNT [DMAX-DMIN A]`` lines, then ``total N``; a C server sends only the total."""
    meta = _json(frames, 2)
    total, counts = meta.get("spots"), meta.get("spots_per_bin", [])
    if type(total) is not int or not isinstance(counts, list):
        raise BadReply("the reply has no spot count ('spots' in the meta frame)")
    ranges = meta.get("spots_bin_d_A")
    ranges = ranges if isinstance(ranges, list) and len(ranges) == len(counts) else []
    for i, n in enumerate(counts, 1):
        print(f"{i:2d} {n}{_d_range(ranges[i - 1] if ranges else None)}")
    print(f"total {total}")
    return EXIT_OK


def _d_range(pair: Any) -> str:
    """`` 39.21-5.317 A`` (``inf`` for the beam's own bin), or nothing without a geometry."""
    if not isinstance(pair, list) or len(pair) != 2:
        return ""
    big, small = ("inf" if v is None else f"{v:g}" for v in pair)
    return f" {big}-{small} A"


def print_status(args: argparse.Namespace, frames: list[bytes], hidden: list[str]) -> int:
    """A few lines a person reads (``--json``: the server's answer as it came). Only fields of
    the expected type are shown, so a C server's or an older server's answer prints too."""
    status = _json(frames, 2)
    if args.json:
        return print_json(args, frames, hidden)
    for line in summary(status):
        print(printable(line, hidden))
    return EXIT_OK


def summary(status: dict[str, Any]) -> list[str]:
    """The human lines of a status answer (pyis's fields; anything else is left out)."""
    lines = []
    up, workers, in_flight = (_count(status, k) for k in ("uptime_s", "workers", "in_flight"))
    head = [f"up {_duration(up)}" if up is not None else ""]
    head += [f"{workers} workers" if workers is not None else ""]
    head += [f"{in_flight} requests in flight" if in_flight is not None else ""]
    if any(head):
        lines.append(", ".join(part for part in head if part))
    outcomes = status.get("requests")
    if isinstance(outcomes, dict):
        counts = {k: v for k, v in outcomes.items() if _is_count(v)}
        done = sorted(counts.items(), key=lambda kv: (kv[0] != "ok", -kv[1], kv[0]))
        text = ", ".join(f"{n} {code}" for code, n in done)
        lines.append(f"requests: {text or 'none yet'}")
    cache = status.get("cache")
    if isinstance(cache, dict) and _is_count(cache.get("hits")) and _is_count(cache.get("misses")):
        hits, misses = cache["hits"], cache["misses"]
        rate = f" ({100 * hits / (hits + misses):.0f} % hits)" if hits + misses else ""
        lines.append(f"cache: {hits} hits, {misses} misses{rate}")
    starts = status.get("worker_start_ms")
    if isinstance(starts, list) and starts and all(_is_count(v) for v in starts):
        ordered = sorted(starts)
        lines.append(
            f"worker start: median {ordered[len(ordered) // 2]:.0f} ms (last {len(starts)})"
        )
    return lines or ["the server's status has none of the usual fields; --json shows it"]


def _is_count(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _count(status: dict[str, Any], key: str) -> Any:
    value = status.get(key)
    return value if _is_count(value) else None


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


# how each subcommand prints its reply, by the job table's ``cli.output`` (follow writes files
# as frames come: iscli/follow.py)
PRINTERS: dict[str, Callable[[argparse.Namespace, list[bytes], list[str]], int]] = {
    "jpeg": write_jpeg,
    "json": print_json,
    "spots": print_spots,
    "status": print_status,
}


def print_detail(address: str, timeout: float) -> int:
    """The per-worker detail, which the public ``status`` answer leaves out."""
    try:
        with urllib.request.urlopen(f"http://{address}/status", timeout=timeout) as resp:
            detail = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        print(f"is-cli: no status detail from {address}: {exc}", file=sys.stderr)
        return EXIT_NO_REPLY
    print(json.dumps(detail, indent=2, sort_keys=True))
    return EXIT_OK


def _json(frames: list[bytes], i: int) -> dict[str, Any]:
    try:
        value = json.loads(frames[i])
    except (IndexError, ValueError):
        raise BadReply(f"reply frame {i} is missing or not JSON") from None
    if not isinstance(value, dict):
        raise BadReply(f"reply frame {i} is not a JSON object")
    return value
