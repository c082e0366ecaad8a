"""Every job type of the protocol, one row each: adding a type is a row here plus its handler.

The procmgr (routing, deadlines, admission, progress), the worker (dispatch: worker/jobs.py
``HANDLERS``), the access policy (path-bound tokens, default scopes), the token tools and
``is-cli`` (its subcommands and how each prints its reply) all read this table; nothing else
names a job type to decide what to do with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class AnsweredBy(Enum):
    PROCMGR = "procmgr"  # at once, from its own state, without a session (status)
    PIPELINE = "pipeline"  # a worker's pool thread runs it (worker/jobs.py HANDLERS)
    FOLLOWER = "follower"  # parked in the worker until a new frame appears (worker/follow.py)


class Deadline(Enum):
    """Which budget a request gets in the procmgr (procmgr config keys)."""

    NONE = "none"  # answered before any deadline could matter
    REQUEST = "request"  # request_timeout_s
    LONG_POLL = "long_poll"  # its own ``wait`` + request_timeout_s; a pool of its own
    LONG_JOB = "long_job"  # index_timeout_s + 5; its own per-session cap (session_max_index)


class Payload(Enum):
    NONE = "none"  # the reply is [""][job][meta]
    JPEG = "jpeg"  # the reply's fourth frame is a JPEG (newest: when there is a new frame)
    COUNTS = "counts"  # the fourth frame is a reduced image's counts (worker/counts.py)


@dataclass(frozen=True)
class Cli:
    """How ``is-cli`` offers the type: its subcommand, the printer of the reply
    (iscli/output.py ``PRINTERS``) and its help line."""

    command: str
    output: str
    help: str


@dataclass(frozen=True)
class JobType:
    name: str
    answered_by: AnsweredBy
    needs_file: bool  # 'fn' must name an image (list and newest take a directory, or nothing)
    path_checked: bool  # the worker checks every file it opens against a path-bound token
    deadline: Deadline
    payload: Payload
    in_default_scope: bool  # allowed by a token whose issuer names no scope
    default_xsize: int = 512
    publishes_progress: bool = False  # progress lines on the web host's Redis (protocol.py)
    cli: Cli | None = None  # None: a viewer (is-web) job, no subcommand
    doc: str = ""


_W, _REQ = AnsweredBy.PIPELINE, Deadline.REQUEST
TABLE: tuple[JobType, ...] = (
    JobType(
        "jpeg", _W, True, True, _REQ, Payload.JPEG, True,
        cli=Cli("jpeg", "jpeg", "render an image to JPEG"),
        doc="an image (or a sum of frames) reduced, mapped to grey or colour, as a JPEG",
    ),
    JobType(
        "spots", _W, True, True, _REQ, Payload.NONE, True, default_xsize=384,
        cli=Cli(
            "spots", "spots",
            "print the spot count and d-spacing range (A) of each of 16 bins, then the total",
        ),
        doc="spot counts per resolution bin, on a fixed reduction of the whole frame",
    ),
    JobType(
        "meta", _W, True, True, _REQ, Payload.NONE, True,
        cli=Cli("meta", "json", "print an image's metadata as JSON"),
        doc="the image's header in the wire units",
    ),
    JobType(
        "index", _W, True, True, Deadline.LONG_JOB, Payload.NONE, True,
        publishes_progress=True,
        cli=Cli("index", "json", "index one or two images; print the result as JSON"),
        doc="the configured indexer on one or two images; results in the ESAF home",
    ),
    JobType(
        "status", AnsweredBy.PROCMGR, False, False, Deadline.NONE, Payload.NONE, False,
        cli=Cli("status", "status", "print a summary of the server's status (--json: as JSON)"),
        doc="the server's counts; needs no session",
    ),
    JobType(
        "list", _W, False, True, _REQ, Payload.NONE, True,
        doc="is-web: the images and series in a directory",
    ),
    JobType(
        "tile", _W, True, True, _REQ, Payload.JPEG, True,
        doc="is-web: one JPEG tile of a pyramid level",
    ),
    JobType(
        "pixels", _W, True, True, _REQ, Payload.NONE, True,
        doc="is-web: the counts of a small window of pixels",
    ),
    JobType(
        "counts", _W, True, True, _REQ, Payload.COUNTS, True,
        doc="is-web: a jpeg's reduced counts and masks, for the page's own contrast changes",
    ),
    JobType(
        "newest", AnsweredBy.FOLLOWER, False, True, Deadline.LONG_POLL, Payload.JPEG, True,
        cli=Cli("follow", "follow", "keep writing the newest frame of a collection to a file"),
        doc="long-poll: the newest frame of a collection once it is newer than 'seq'",
    ),
)  # fmt: skip
BY_NAME: dict[str, JobType] = {t.name: t for t in TABLE}
JOB_TYPES = frozenset(BY_NAME)
# what an access token allows when its issuer names no scope: every job a viewer needs
DEFAULT_SCOPE = " ".join(t.name for t in TABLE if t.in_default_scope)
LONG_POLL_TYPES = frozenset(t.name for t in TABLE if t.deadline is Deadline.LONG_POLL)
FOLLOWED_TYPES = frozenset(t.name for t in TABLE if t.answered_by is AnsweredBy.FOLLOWER)
BY_COMMAND: dict[str, JobType] = {t.cli.command: t for t in TABLE if t.cli is not None}


def of(name: str) -> JobType:
    """The row of a type a request has already been validated to name."""
    return BY_NAME[name]
