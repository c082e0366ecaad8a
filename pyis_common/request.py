"""Parse one request frame into a frozen :class:`Request`, or raise ``BadRequest``.

The C server read integers with ``json_integer_value`` (a string or a real silently became 0)
and clamped sizes; we refuse anything that is not what the field means, with a sentence that
names the field. Field meanings are DESIGN.md section 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pyis_common import jobtypes, strictjson
from pyis_common.errors import BadRequest
from pyis_common.protocol import (
    COLORMAPS,
    DEFAULT_WAIT_S,
    LEVEL_RULES,
    MAX_AUTH,
    MAX_FN,
    MAX_FRAME,
    MAX_LABEL,
    MAX_LABEL_HEIGHT,
    MAX_PID,
    MAX_SIZE,
    MAX_WAIT_S,
    MAX_ZOOM,
    MIN_SIZE,
    OBSOLETE_TYPES,
    SCALES,
)

LABEL_HEIGHT_PER_WIDTH = 32  # a label without labelHeight: 1/32 of the width, 16..64 rows
MIN_DEFAULT_LABEL_HEIGHT = 16


@dataclass(frozen=True)
class Request:
    """A validated request; ``raw`` is the client's object, echoed back (minus ``auth``)."""

    pid: str
    type: str
    esaf: int = 0
    fn: str | None = None
    fn2: str | None = None  # index: a second image
    frame: int = 1
    frame2: int | None = None  # index: the frame of the second image (None: its first)
    xsize: int = 512
    ysize: int | None = None
    zoom: float = 1.0
    segcol: float = 0.0
    segrow: float = 0.0
    contrast: float = 0.0
    wval: float = 0.0
    label: str = ""
    label_height: int = 0
    seq: int = 0  # newest: the sequence number the client last saw (0: none yet)
    wait_s: float = 0.0  # newest: how long to wait for a newer frame
    levels: str | None = None  # None: the server's configured rule
    scale: str = "linear"
    colormap: str = "inverted"
    auth: str | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def job_type(self) -> jobtypes.JobType:
        """This request's row in the job table: what it needs, its deadline, its payload."""
        return jobtypes.of(self.type)

    @property
    def frame_asked(self) -> int | None:
        """The frame the client named; None (missing or <= 0, which the C server read as 1)
        means the file's first image: image 3 for the Eiger data file holding images 3-4."""
        value = self.raw.get("frame")
        return self.frame if isinstance(value, int) and value > 0 else None

    def echo(self) -> dict[str, Any]:
        """The job as sent back to the client: its own fields, never the token."""
        return {k: v for k, v in self.raw.items() if k != "auth"}

    def to_worker(self) -> dict[str, Any]:
        """The fields a worker needs, as plain JSON (the worker re-validates them)."""
        return {k: v for k, v in self.raw.items() if k not in ("auth", "pid")} | {"type": self.type}


def _int(obj: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):  # 256.0 too: JS never sends it
        raise BadRequest(f"'{name}' must be an integer")
    if not lo <= value <= hi:
        raise BadRequest(f"'{name}' must be between {lo} and {hi}")
    return value


def _num(obj: dict[str, Any], name: str, default: float) -> float:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"'{name}' must be a finite number")
    return float(value)


def _str(obj: dict[str, Any], name: str, limit: int) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string")
    if len(value) > limit:
        raise BadRequest(f"'{name}' is longer than {limit} characters")
    if "\x00" in value:
        raise BadRequest(f"'{name}' contains a NUL character")
    return value


def _wait(obj: dict[str, Any]) -> float:
    """The long-poll's ``wait`` in seconds: bounded, so the procmgr's deadline (the wait plus
    the usual request time) always passes after the worker's "nothing new"."""
    wait = _num(obj, "wait", DEFAULT_WAIT_S)
    if not 0.0 <= wait <= MAX_WAIT_S:
        raise BadRequest(f"'wait' must be between 0 and {MAX_WAIT_S:g} seconds")
    return wait


def _frame2(obj: dict[str, Any], fn2: str | None) -> int | None:
    """index's second frame: 1-based, and only beside the second image it belongs to."""
    if obj.get("frame2") is None:
        return None
    if not fn2:
        raise BadRequest("'frame2' needs 'fn2', the image it belongs to")
    return _int(obj, "frame2", 1, 1, MAX_FRAME)


def _view(obj: dict[str, Any]) -> tuple[float, float, float]:
    """zoom (rounded to 0.1, as the C server did) and the segment of the zoomed grid. The C
    server clamped bad values silently, so a client never learnt it showed another view."""
    zoom = round(_num(obj, "zoom", 1.0), 1)
    if not 1.0 <= zoom <= MAX_ZOOM:
        raise BadRequest(f"'zoom' must be between 1 and {MAX_ZOOM:g}")
    out = [zoom]
    for name in ("segcol", "segrow"):
        value = _num(obj, name, 0.0)
        if not 0.0 <= value <= zoom - 1.0:
            raise BadRequest(f"'{name}' must be between 0 and zoom - 1 ({zoom - 1.0:g})")
        out.append(value)
    return zoom, out[1], out[2]


def default_label_height(label: str, xsize: int) -> int:
    """Rows of a banner whose request gave a label but no labelHeight: it grows with the
    picture (the C server drew nothing useful at 0)."""
    if not label:
        return 0
    return min(max(xsize // LABEL_HEIGHT_PER_WIDTH, MIN_DEFAULT_LABEL_HEIGHT), MAX_LABEL_HEIGHT)


def _choice(obj: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in allowed:
        raise BadRequest(f"'{name}' must be one of {', '.join(allowed)}")
    return value.lower()


def parse_frame(frame: bytes) -> Request:
    """The request frame as the proxy delivered it: UTF-8 JSON holding one object."""
    try:
        obj = strictjson.loads(frame.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("request is not valid UTF-8") from None
    except RecursionError:
        raise BadRequest("request JSON is nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"request is not valid JSON ({exc})") from None
    return parse(obj)


def parse(obj: Any, *, need_pid: bool = True) -> Request:
    """Validate a request object; the worker re-parses its job with ``need_pid=False``."""
    if not isinstance(obj, dict):
        raise BadRequest("request must be a JSON object")
    pid = obj.get("pid") if need_pid else "-"
    if not isinstance(pid, str) or not pid:
        raise BadRequest("request does not contain a 'pid' string")
    if len(pid) > MAX_PID or not pid.isprintable():
        raise BadRequest(f"'pid' must be at most {MAX_PID} printable characters")
    if "type" not in obj:
        raise BadRequest("No type parameter in job")  # the C server's words
    jtype = obj["type"]
    if not isinstance(jtype, str):
        raise BadRequest("'type' must be a string")
    jtype = jtype.lower()
    if jtype in OBSOLETE_TYPES:
        raise BadRequest(f"job type '{jtype}' is obsolete")
    row = jobtypes.BY_NAME.get(jtype)
    if row is None:
        raise BadRequest(f"unknown job type '{jtype[:40]}'")
    fn = _str(obj, "fn", MAX_FN)
    frame = _int(obj, "frame", 1, -MAX_FRAME, MAX_FRAME)
    fn2 = _str(obj, "fn2", MAX_FN)
    xsize = _int(obj, "xsize", row.default_xsize, MIN_SIZE, MAX_SIZE)
    zoom, segcol, segrow = _view(obj)
    label = _str(obj, "label", MAX_LABEL) or ""
    req = Request(
        pid=pid,
        type=jtype,
        esaf=_int(obj, "esaf", 0, 0, MAX_FRAME),
        fn=fn,
        fn2=fn2,
        frame=max(frame, 1),
        frame2=_frame2(obj, fn2),
        xsize=xsize,
        ysize=None if obj.get("ysize") is None else _int(obj, "ysize", 0, MIN_SIZE, MAX_SIZE),
        zoom=zoom,
        segcol=segcol,
        segrow=segrow,
        contrast=_num(obj, "contrast", 0.0),
        wval=_num(obj, "wval", 0.0),
        label=label,
        label_height=_int(
            obj, "labelHeight", default_label_height(label, xsize), 0, MAX_LABEL_HEIGHT
        ),
        seq=_int(obj, "seq", 0, 0, 1 << 62),
        wait_s=_wait(obj),
        levels=_choice(obj, "levels", LEVEL_RULES),
        scale=_choice(obj, "scale", SCALES) or "linear",
        colormap=_choice(obj, "colormap", COLORMAPS) or "inverted",
        auth=_str(obj, "auth", MAX_AUTH),
        raw=obj,
    )
    if row.needs_file and not fn:  # refused before a session lookup or a worker
        raise BadRequest("'fn' names no file")
    return req
