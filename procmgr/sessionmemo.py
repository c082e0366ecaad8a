"""A short memo of session hashes read from the web host's Redis (``session_memo_s``).

Every request reads its session hash so that a logout or a revocation stops the next request;
that read is a Redis round trip and a thread hand-off on every new contrast a viewer asks for.
With ``session_memo_s`` > 0, a session read (existing, not revoked) is reused for up to that
long, but only while the keyspace notifications of that Redis are watched
(procmgr/sessionwatch.py): any change to a session's hash drops its entry at once, so a
logout, a ``revoked`` mark or a new token is seen by the next request as without a memo. The
signature check still runs on every request (memoized by its bytes in procmgr/access.py), so
expiry, ESAF and scope are checked as before. A read that began before some notification was
handled is not remembered (``generation``): it may predate the change that notification
announced. 0 reads every session every time. Bounded: at most MAX_ENTRIES sessions, oldest out
first; SIGHUP clears it. The loop and the watch's thread share it, under a lock.
"""

from __future__ import annotations

import threading
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
        self._lock = threading.Lock()
        self.generation = 0  # bumped by every drop and clear
        self.hits = 0

    def get(self, pid: str) -> Any | None:
        """The session read for ``pid`` within the last ``hold_s``, else None."""
        with self._lock:
            item = self._items.get(pid)
            if item is None:
                return None
            if time.monotonic() >= item[0]:
                del self._items[pid]
                return None
            self.hits += 1
            return item[1]

    def put(self, pid: str, session: Any, since: int | None = None) -> None:
        """Remember a session that exists and is not revoked (anything else is read again),
        unless something was dropped since generation ``since`` (when its read began)."""
        if self.hold_s <= 0 or not session.exists or session.fields[REVOKED] is not None:
            return
        with self._lock:
            if since is not None and since != self.generation:
                return
            self._items.pop(pid, None)
            while len(self._items) >= self.max_entries:
                self._items.popitem(last=False)
            self._items[pid] = (time.monotonic() + self.hold_s, session)

    def drop(self, pid: str) -> None:
        """The session hash of ``pid`` changed: read it again next time."""
        with self._lock:
            self.generation += 1
            self._items.pop(pid, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
