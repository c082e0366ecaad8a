"""The client protocol of the image server, in one place (the zguide's MDP.py is the model).

A client (is.js, is-cli, is-web) sends one JSON request on a REQ socket; the reply is either
one error frame ``code: sentence`` or four frames ``["", job JSON, meta JSON, payload]``
(ORIGINAL.md, DESIGN.md section 2). What a client may rely on, and every hop enforces, is
declared here; the modules that enforce it import it.
"""

from __future__ import annotations

import hashlib

MAX_REPLY_BYTES = 256 << 20  # one reply frame: a 10000 px RGB JPEG at quality 100 fits

# progress of a long job (index) on the web host's Redis: ``pyis:progress:<hash>:<tag>``
PROGRESS_PREFIX = "pyis:progress:"
MAX_TAG = 64  # cap on the tag in a progress channel name


def progress_channel(pid: str, tag: str) -> str:
    """The Redis channel the procmgr publishes a job's progress on and a client listens to.

    The pid is hashed because channel names are visible to every client of that Redis
    (``PUBSUB CHANNELS``) and the pid names a session's access object; the tag loses spaces
    and control characters and is capped.
    """
    session = hashlib.sha256(pid.encode()).hexdigest()[:16]
    clean = "".join(ch for ch in tag if ch.isprintable() and not ch.isspace())[:MAX_TAG]
    return f"{PROGRESS_PREFIX}{session}:{clean or '-'}"
