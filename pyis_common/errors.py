"""Error classes with a stable wire code word.

Only procmgr's dispatch turns one into wire text (``code: sentence``); anything else, and any
code a worker invents, becomes ``internal:``. Sentences are for humans and never carry a stack
trace or a secret.
"""

from __future__ import annotations

from pyis_common.protocol import CODES, MAX_SENTENCE

__all__ = ["CODES", "MAX_SENTENCE"]  # re-exported: clients that map codes import them here


class PyisError(Exception):
    """Base class: ``code`` is the wire code word, ``str(exc)`` the human sentence."""

    code = "internal"


class BadRequest(PyisError):
    code = "bad_request"


class Refused(PyisError):
    """An access refusal: the session, its access object or the policy said no. The access
    code raises the subclass (never a code string), so the reply, the audit line and
    ``is-authsign verify`` say the same."""


class Unauthorized(Refused):
    """No valid access object for this session (missing, revoked, expired, forged)."""

    code = "unauthorized"


class Forbidden(Refused):
    """A valid access object that does not allow this request."""

    code = "forbidden"


class NotFound(PyisError):
    code = "not_found"


class Unsupported(PyisError):
    code = "unsupported"


class Busy(PyisError):
    code = "busy"


class Timeout(PyisError):
    code = "timeout"


class Internal(PyisError):
    code = "internal"


class Incomplete(PyisError):
    """The file is still being written (a truncated frame, an Eiger image not yet on disk):
    retryable, unlike ``unsupported`` for a file that is damaged for good."""

    code = "incomplete"


BY_CODE: dict[str, type[PyisError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unsupported,
        Busy,
        Timeout,
        Internal,
        Incomplete,
    )
}


def known_code(code: object) -> str:
    """A worker's (or anyone's) code word if it is one of ours, else ``internal``: an
    invented code must never reach a reply, a log field or a metric label."""
    return code if isinstance(code, str) and code in BY_CODE else "internal"


def wire_text(code: str, sentence: str) -> bytes:
    """The one place an error reply frame is made: ``code: sentence`` in UTF-8, bounded."""
    if code not in BY_CODE:
        code, sentence = "internal", "the image server failed"
    clean = " ".join(str(sentence).split())[:MAX_SENTENCE]
    return f"{code}: {clean}".encode("utf-8", "replace")


def parse_wire_text(frame: bytes) -> tuple[str, str]:
    """Split an error frame back into (code, sentence); clients use it for exit codes."""
    text = frame.decode("utf-8", "replace")
    code, _, sentence = text.partition(":")
    if code not in BY_CODE:
        return "internal", text
    return code, sentence.strip()
