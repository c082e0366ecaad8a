"""A short memo of session hashes read from the web host's Redis (``session_memo_s``).

Every request reads its session hash so that a logout or a revocation stops the next request;
that read is a Redis round trip and a thread hand-off on every new contrast a viewer asks for.
With ``session_memo_s`` > 0, a session read (existing, not revoked) is reused for that long:
the signature check still runs on every request (memoized by its bytes in procmgr/access.py),
so expiry, ESAF and scope are checked as before; only a logout, a ``revoked`` mark or a new
token in the hash take up to ``session_memo_s`` longer to be seen. 0 (the default) keeps
"stops at the next request". Bounded: at most MAX_ENTRIES sessions, oldest out first; SIGHUP
clears it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

MAX_ENTRIES = 4096  # sessions remembered at once (each a few hundred bytes)
REVOKED = 3  # index of "revoked" in procmgr.sessions.FIELDS


class SessionMemo:
    def __init__(self, hold_s: float, max_entries: int = MAX_ENTRIES) -> None:
        self.hold_s = hold_s
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self.hits = 0

    def get(self, pid: str) -> Any | None:
        """The session read for ``pid`` within the last ``hold_s``, else None."""
        item = self._items.get(pid)
        if item is None:
            return None
        if time.monotonic() >= item[0]:
            del self._items[pid]
            return None
        self.hits += 1
        return item[1]

    def put(self, pid: str, session: Any) -> None:
        """Remember a session that exists and is not revoked (anything else is read again)."""
        if self.hold_s <= 0 or not session.exists or session.fields[REVOKED] is not None:
            return
        self._items.pop(pid, None)
        while len(self._items) >= self.max_entries:
            self._items.popitem(last=False)
        self._items[pid] = (time.monotonic() + self.hold_s, session)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
