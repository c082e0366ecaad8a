"""Stage-1 cache, tier 1: a per-worker LRU bounded in bytes, with in-process single-flight.

The key holds the file's identity (device, inode, size, mtime_ns) next to the path, so a
rewritten file is a different key and never served stale (Tiled keyed on path alone; the C
server on ``egid:fn``). Hits reorder (the C server's "LRU" did not), the byte bound holds
(it had none), and concurrent misses for one key cause one computation, not N.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pyis_common.errors import Timeout

V = TypeVar("V")
DEFAULT_FRACTION = 32  # a worker's LRU may use 1/32 of RAM: 24 GiB -> 768 MiB
DEFAULT_CAP = 1 << 30  # but never more than 1 GiB: many (user, ESAF) workers may coexist
WAIT_S = 30.0  # a follower waits at most this for the leader (the request deadline is shorter)


def default_bytes() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        total = 8 << 30
    return min(DEFAULT_CAP, total // DEFAULT_FRACTION)


@dataclass(frozen=True)
class FrameKey:
    """One version of one frame: what a frame's pyramid (worker/pyramid.py) depends on."""

    esaf: int
    path: str  # relative to the ESAF home
    dev: int
    ino: int
    size: int
    mtime_ns: int
    frame: int


@dataclass(frozen=True)
class Key:
    """Everything stage 1 depends on; contrast is not here (stage 2 runs per request)."""

    esaf: int
    path: str  # relative to the ESAF home
    dev: int
    ino: int
    size: int
    mtime_ns: int
    frame: int
    zoom: float
    segcol: float
    segrow: float
    xsize: int
    ysize: int | None

    @property
    def frame_key(self) -> FrameKey:
        return FrameKey(
            self.esaf, self.path, self.dev, self.ino, self.size, self.mtime_ns, self.frame
        )


def superseded(fkey: FrameKey) -> Callable[[Hashable], bool]:
    """Keys of another version of ``fkey``'s file (same ESAF and path, another identity),
    which no request names once the file was rewritten or replaced. Dropped when the new
    version is read, their memory is what the new frame reuses: a page never touched before
    costs 5-40 us on this host, tens of ms for a 6M frame's, which a process that keeps
    nothing never pays."""
    ident = (fkey.dev, fkey.ino, fkey.size, fkey.mtime_ns)

    def stale(key: Hashable) -> bool:
        if not isinstance(key, Key | FrameKey) or (key.esaf, key.path) != (fkey.esaf, fkey.path):
            return False
        return (key.dev, key.ino, key.size, key.mtime_ns) != ident

    return stale


class LRU(Generic[V]):
    """Thread-safe, byte-bounded, least recently used first out."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: V, nbytes: int) -> None:
        with self._lock:
            self._store(key, value, nbytes)

    def resize(self, key: Hashable, nbytes: int) -> None:
        """A value held here grew (a pyramid built a level): evict others, or it, to stay bound."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._store(key, item[0], nbytes)

    def _store(self, key: Hashable, value: V, nbytes: int) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        if nbytes > self.max_bytes:
            return  # would evict everything and still not fit
        while self._items and self.bytes + nbytes > self.max_bytes:
            _, (_, size) = self._items.popitem(last=False)
            self.bytes -= size
            self.evictions += 1
        self._items[key] = (value, nbytes)
        self.bytes += nbytes

    def drop(self, stale: Callable[[Hashable], bool]) -> int:
        """Forget the entries whose key is ``stale`` (their memory is free for what comes
        next); how many."""
        with self._lock:
            keys = [k for k in self._items if stale(k)]
            for key in keys:
                self.bytes -= self._items.pop(key)[1]
        return len(keys)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "bytes": self.bytes,
                "entries": len(self._items),
                "max_bytes": self.max_bytes,
            }


class SingleFlight(Generic[V]):
    """One computation per key at a time; followers wait for the leader's result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight[V]] = {}

    def run(self, key: Hashable, compute: Callable[[], V]) -> tuple[V, bool]:
        """(value, led): ``led`` is True for the caller that computed it."""
        with self._lock:
            existing = self._flights.get(key)
            if existing is None:
                flight = self._flights[key] = _Flight[V]()
        if existing is not None:
            return existing.wait(), False
        try:
            flight.value = compute()
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return flight.value, True


class _Flight(Generic[V]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def wait(self) -> V:
        if not self.done.wait(WAIT_S):
            raise Timeout("reading this image took too long")
        if self.error is not None:
            raise self.error
        return self.value
