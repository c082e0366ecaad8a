"""The image server's protocol, in one place (the zguide's MDP.py is the model).

A client (is.js, is-cli, is-web) sends one JSON request on a REQ socket; the reply is either
one error frame ``code: sentence`` or ``["", job JSON, meta JSON, payload?]`` (ORIGINAL.md,
DESIGN.md section 2). The job types are the table in pyis_common/jobtypes.py. Every limit a
client may rely on and every hop enforces is declared here, and the modules that enforce it
import it; so are the timings of the proxy <-> procmgr link.
"""

from __future__ import annotations

import hashlib

# -- error codes (the error frame's first word) and is-cli's exit status for each ----------
CODES: tuple[str, ...] = (
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "unsupported",
    "busy",
    "timeout",
    "internal",
    "incomplete",  # appended last: exit statuses are 10 + the index, so none shifts
)
EXIT_OK, EXIT_LOCAL, EXIT_USAGE = 0, 1, 2  # is-cli: done, a local failure, usage or config
EXIT_BY_CODE: dict[str, int] = {code: 10 + i for i, code in enumerate(CODES)}
EXIT_NO_REPLY = 20  # no reply after every try
MAX_SENTENCE = 4000  # the C server capped error frames at 4095 bytes; stay under it

# -- request fields: caps and choices (pyis_common/request.py applies them) ----------------
MAX_PID = 256  # session ids are short tokens; a 10 KB pid is an attack, not a session
MAX_FN = 4096  # PATH_MAX
MAX_LABEL = 256
MAX_AUTH = 8192  # an inline token
MIN_SIZE, MAX_SIZE = 8, 10000  # the C server's limits on xsize (and ysize)
MAX_ZOOM = 1000.0
MAX_LABEL_HEIGHT = 64  # the C server's 9x15 font looked right up to here
MAX_FRAME = 1 << 31
MAX_WAIT_S = 30.0  # a newest long-poll waits at most this long (its client waits longer)
DEFAULT_WAIT_S = 4.0  # under is-cli's default 5 s timeout
LEVEL_RULES = ("auto", "c")  # automatic levels: pyis's (README) or the C server's mean +- stddev
SCALES = ("linear", "sqrt", "log")
COLORMAPS = ("inverted", "grey", "viridis")  # inverted: spots dark on white, as the C server
OBSOLETE_TYPES = frozenset(
    {"rsync_host_test", "rsync_connection_test", "local_dir_stats", "rsync_transfer"}
)  # the C server's; refused by name

# -- envelope and reply ---------------------------------------------------------------------
MAX_ENVELOPE = 16  # the C server kept up to 16 envelope frames; more is not a real route
MAX_REPLY_BYTES = 256 << 20  # one reply frame: a 10000 px RGB JPEG at quality 100 fits
# what a worker may add to the echoed job: levels and size used, spots' forced full view (as
# the C server did); ``newest`` to a newest reply; the procmgr adds ``timings_ms``
DECIDED_FIELDS = ("wval_used", "bval_used", "xsize", "ysize", "zoom", "segcol", "segrow")
NEWEST_FIELD = "newest"
TIMINGS_FIELD = "timings_ms"

# -- progress of a long job (index) on the web host's Redis ---------------------------------
PROGRESS_PREFIX = "pyis:progress:"  # + sha256(pid)[:16] + ":" + tag
MAX_TAG = 64  # cap on the tag in a progress channel name
MAX_PROGRESS_LINE = 200  # characters of one progress message

# -- heartbeats on the proxy <-> procmgr link (pyis_common/hostlink.py, zmtplink.py) --------
HEARTBEAT_INTERVAL_S = 1.0  # each procmgr tells each proxy its capacity this often
HEARTBEAT_LIVENESS = 3  # heartbeats missed before the proxy gives a host up
HOST_DEAD_AFTER_S = HEARTBEAT_INTERVAL_S * HEARTBEAT_LIVENESS  # far below a client's deadline
ZMTP_HEARTBEAT_IVL_MS = 1000  # PING an idle link every second: nothing on a busy link
ZMTP_HEARTBEAT_TIMEOUT_MS = 3000  # no traffic for 3 s after a PING: drop the link
ZMTP_HEARTBEAT_TTL_MS = 6000  # asks the peer to drop us after 6 s without our traffic


def progress_channel(pid: str, tag: str) -> str:
    """The Redis channel the procmgr publishes a job's progress on and a client listens to.

    The pid is hashed because channel names are visible to every client of that Redis
    (``PUBSUB CHANNELS``) and the pid names a session's access object; the tag loses spaces
    and control characters and is capped.
    """
    session = hashlib.sha256(pid.encode()).hexdigest()[:16]
    clean = "".join(ch for ch in tag if ch.isprintable() and not ch.isspace())[:MAX_TAG]
    return f"{PROGRESS_PREFIX}{session}:{clean or '-'}"
