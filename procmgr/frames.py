"""The frames around a request and a reply, at the procmgr's ROUTER.

A request arrives as ``[proxy-id][client-id]...[""][JSON]``; a success reply leaves as
``[route...][""][job JSON][meta JSON][payload?]``. Both are built here from checked parts.
"""

from __future__ import annotations

import math
from typing import Any

from pyis_common import strictjson
from pyis_common.jobtypes import AnsweredBy, Payload
from pyis_common.protocol import DECIDED_FIELDS, MAX_ENVELOPE, NEWEST_FIELD, TIMINGS_FIELD
from pyis_common.request import Request

WORKER_STEPS = ("queue", "read", "reduce", "map", "encode", "worker")  # worker/timings.py
MAX_MS = 1e7  # a step longer than ~3 hours is a lie


def split_envelope(frames: list[bytes]) -> tuple[list[bytes] | None, list[bytes] | None]:
    """``[proxy-id][client-id]...[""]`` + body.

    Without a delimiter in the first MAX_ENVELOPE frames (a DEALER client, a forged route) the
    body is None and the route is the two identity frames the ROUTERs added, so even that
    client gets its one error reply instead of the C server's exit(-1).
    """
    for i, frame in enumerate(frames[: MAX_ENVELOPE + 1]):
        if frame == b"":
            return (frames[: i + 1], frames[i + 1 :]) if i >= 1 else (None, None)
    if len(frames) >= 3:
        return frames[:2], None
    return None, None


def timings_ms(reported: Any, seen: dict[str, float]) -> dict[str, float]:
    """The job's ``timings_ms``: the worker's steps (each a sane number, else 0) and what the
    procmgr saw itself (``access``, ``total``)."""
    steps = reported if isinstance(reported, dict) else {}
    out = {}
    for name in WORKER_STEPS:
        out[name] = _sane_ms(steps.get(name))
    return out | {k: round(v, 3) for k, v in seen.items()}


def _sane_ms(value: Any) -> float:
    """A worker's step time if it is a plausible number of milliseconds, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) and 0 <= value <= MAX_MS else 0.0


def checked_newest(value: Any) -> dict[str, Any] | None:
    """A ``newest`` reply's frame (None: nothing new in the wait), rebuilt from checked
    fields so a worker cannot put anything else in the client's job."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("malformed newest")
    seq, fn, frame, age = (value.get(k) for k in ("seq", "fn", "frame", "age_ms"))
    if not all(type(v) is int for v in (seq, frame)) or not isinstance(fn, str):
        raise ValueError("malformed newest")
    if not isinstance(age, int | float) or isinstance(age, bool) or not 0 <= age <= MAX_MS:
        raise ValueError("malformed newest")
    return {"seq": seq, "fn": fn[:4096], "frame": frame, "age_ms": round(float(age), 3)}


def reply_frames(
    req: Request,
    header: dict[str, Any],
    payloads: list[bytes],
    seen_ms: dict[str, float] | None = None,
) -> list[bytes]:
    """Rebuild the reply from checked parts: the worker may only add decided numbers and its
    step timings."""
    decided, meta = header.get("job"), header.get("meta")
    most = 0 if req.job_type.payload is Payload.NONE else 1  # a JPEG or counts, or nothing
    if not isinstance(decided, dict) or not isinstance(meta, dict) or len(payloads) > most:
        raise ValueError("malformed reply")
    job = req.echo()
    for name in DECIDED_FIELDS:
        value = decided.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            job[name] = value
    if req.job_type.answered_by is AnsweredBy.FOLLOWER:
        job[NEWEST_FIELD] = checked_newest(decided.get(NEWEST_FIELD))
    job[TIMINGS_FIELD] = timings_ms(header.get("timings"), seen_ms or {})
    return [strictjson.dumps(job), strictjson.dumps(meta), *payloads]
