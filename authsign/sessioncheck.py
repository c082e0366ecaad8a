"""The session hash's own verdict, before any access object is looked at: one rule for the
procmgr (procmgr/access.py) and ``is-authsign verify``, so the tool says what the server does.

The auth server ends a session by setting its ``revoked`` field or by deleting the hash
(logout); either ends it for an inline token too, which the hash only has to exist for.
"""

from __future__ import annotations

from pyis_common.errors import Unauthorized


def require_live(exists: bool, revoked: bytes | str | None) -> None:
    """Unauthorized unless the session hash exists and is not revoked."""
    if revoked:
        raise Unauthorized("this session has been revoked")
    if not exists:
        raise Unauthorized("no access object for this session")


def no_access_object() -> Unauthorized:
    """A live session whose hash holds nothing we accept, and no inline token either."""
    return Unauthorized("no access object for this session")
