"""The JSON/JPEG API: each browser call becomes exactly one wire request with the session.

The gateway checks only the shape of a call (known parameters of the right type, so a typo
fails here with a sentence instead of travelling); what a session may see is decided by the
image server alone, and its refusal comes back word for word with an HTTP status.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
from collections.abc import Callable
from typing import Any

from aiohttp import web

from isweb.upstream import Reply, Upstream
from pyis_common import colortables, jobtypes
from pyis_common.errors import BadRequest, PyisError
from pyis_common.jobtypes import Payload
from pyis_common.protocol import COLORMAPS, LEVEL_RULES, MAX_FN, SCALES

STATUS = {  # wire code -> HTTP status
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "unsupported": 422,
    "busy": 503,
    "timeout": 504,
    "internal": 502,
}
MAX_REPLY_HEADER = 16 << 10  # job + meta beside a JPEG; browsers accept far larger headers
COUNTS_GZIP_LEVEL = 1


def _text(value: str) -> str:
    if len(value) > MAX_FN:
        raise ValueError(f"longer than {MAX_FN} characters")
    return value


def _integer(value: str) -> int:
    if len(value) > 12:
        raise ValueError("too long")
    return int(value)


def _number(value: str) -> float:
    out = float(value[:40])
    if not math.isfinite(out):
        raise ValueError("not finite")
    return out


def _one_of(options: tuple[str, ...]) -> Callable[[str], str]:
    """A word the wire knows (request.py's own list), so a typo is refused here."""

    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(f"not one of {', '.join(options)}")
        return value

    return parse


PARAMS: dict[str, Callable[[str], Any]] = {
    "fn": _text,
    "esaf": _integer,
    "frame": _integer,
    "xsize": _integer,
    "ysize": _integer,
    "contrast": _number,
    "wval": _number,
    "zoom": _number,
    "segcol": _number,
    "segrow": _number,
    "level": _integer,
    "col": _integer,
    "row": _integer,
    "x": _integer,
    "y": _integer,
    "size": _integer,
    "offset": _integer,
    "limit": _integer,
    "sum": _integer,
    "levels": _one_of(LEVEL_RULES),
    "scale": _one_of(SCALES),
    "colormap": _one_of(COLORMAPS),
}
IMAGE = ("fn", "esaf", "frame", "contrast", "wval", "sum", "levels", "scale", "colormap")
CALLS: dict[str, tuple[str, frozenset[str]]] = {  # /api/<name> -> (job type, parameters)
    "list": ("list", frozenset({"fn", "esaf", "offset", "limit"})),
    "meta": ("meta", frozenset({"fn", "esaf", "frame"})),
    "image": ("jpeg", frozenset({*IMAGE, "xsize", "ysize", "zoom", "segcol", "segrow"})),
    "tile": ("tile", frozenset({*IMAGE, "level", "col", "row"})),
    "pixels": ("pixels", frozenset({"fn", "esaf", "frame", "x", "y", "size"})),
    "counts": ("counts", frozenset({*IMAGE, "xsize", "ysize"})),  # the overview's numbers
    "follow": (  # isweb/follow
        "newest",
        frozenset({"fn", "esaf", "xsize", "contrast", "wval", "scale", "colormap"}),
    ),
}


def build_job(name: str, query: dict[str, str], pid: str) -> dict[str, Any]:
    """The wire request for ``/api/<name>?query``, or BadRequest naming the parameter."""
    call = CALLS.get(name)
    if call is None:
        raise web.HTTPNotFound(text="no such API call")
    jtype, allowed = call
    job: dict[str, Any] = {"pid": pid, "type": jtype}
    for key, raw in query.items():
        if key not in allowed:
            raise BadRequest(f"unknown parameter '{key[:40]}' for {name}")
        try:
            job[key] = PARAMS[key](raw)
        except ValueError:
            raise BadRequest(f"parameter '{key}' has a bad value") from None
    return job


def error_response(exc: PyisError, status: int | None = None) -> web.Response:
    body = {"error": exc.code, "message": str(exc)}
    return web.json_response(body, status=status or STATUS.get(exc.code, 502))


def _reply_header(reply: Reply) -> str:
    """The job and meta as one header line; a meta too long for it is left out, but for the
    counts' layout (worker/counts.py: a few KiB), which the payload cannot be read without."""
    body = {"job": reply.job, "meta": reply.meta}
    header = json.dumps(body, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    if len(header) > MAX_REPLY_HEADER:
        kept = {"counts": reply.meta["counts"]} if "counts" in reply.meta else {}
        body["meta"] = {"truncated": True} | kept
        header = json.dumps(body, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return header


def reply_response(reply: Reply) -> web.Response:
    """JSON for list/meta/pixels; a JPEG with the job and meta in ``X-Pyis-Reply`` otherwise."""
    if reply.payload is None:
        return web.json_response({"job": reply.job, "meta": reply.meta})
    return web.Response(
        body=reply.payload,
        content_type="image/jpeg",
        headers={"X-Pyis-Reply": _reply_header(reply)},
    )


def accepts_gzip(accept_encoding: str) -> bool:
    codings = {part.split(";")[0].strip().lower() for part in accept_encoding.split(",")}
    return "gzip" in codings


async def counts_response(reply: Reply, gzip_ok: bool) -> web.Response:
    """The counts (worker/counts.py) with the reply in ``X-Pyis-Reply``, gzipped at level 1 in
    a thread when the browser accepts it: a 6M overview's 1.6 MB of int32 in ~40 ms to ~0.26 MB
    (level 6 saves a fifth more bytes at 5x the time, and would hold the event loop)."""
    headers = {"X-Pyis-Reply": _reply_header(reply), "Cache-Control": "no-store"}
    body = reply.payload or b""
    if gzip_ok:
        body = await asyncio.to_thread(gzip.compress, body, COUNTS_GZIP_LEVEL, mtime=0)
        headers |= {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
    return web.Response(body=body, content_type="application/octet-stream", headers=headers)


async def call(
    upstream: Upstream, name: str, query: dict[str, str], pid: str, accept_encoding: str = ""
) -> web.Response:
    try:
        job = build_job(name, query, pid)
        reply = await upstream.ask(job)
    except PyisError as exc:
        return error_response(exc)
    if jobtypes.of(job["type"]).payload is Payload.COUNTS:
        return await counts_response(reply, accepts_gzip(accept_encoding))
    return reply_response(reply)


LOOKS = json.dumps(colortables.for_the_page(), separators=(",", ":")).encode()


async def looks(_request: web.Request) -> web.Response:
    """The scales' and colour maps' tables (pyis_common/colortables.py) for the page's own
    mapping: static, needing no session."""
    return web.Response(
        body=LOOKS, content_type="application/json", headers={"Cache-Control": "max-age=600"}
    )
