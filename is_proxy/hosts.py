"""The image hosts a proxy knows: who is present, how much each takes, what is in flight where.

The broker state of the zguide's Paranoid Pirate queue, plus the requests in flight on each
host (so that a host's death answers them at once) and a bounded memory of which host last
served each session (sticky routing: that host's worker, LRU and tier 2 are warm).

Routing rule: a request goes to the host that last served its session (``pid`` + ``esaf``; the
proxy cannot see the verified user) while that host has credit and the session holds less than
``1 / SESSION_SHARE`` of the host's capacity there; a busy session's request beyond that goes
to the host with the most free credit (the session stays sticky); a new session, or one whose
host is full or gone, or whose host holds more than one session over the least-held open host
(a host that came back), sticks to the open host with the fewest sessions. So one busy session
spills over instead of pinning a host, and sessions spread over every host, a returning one too.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from pyis_common import hostlink

SESSION_SHARE = 8  # as the procmgr's default session_max_in_flight / max_in_flight
MAX_STICKY = 65536  # sessions remembered; the oldest is forgotten first
# the pid in printable ASCII without a quote or a backslash; the ESAF as JSON writes an integer
_PID = re.compile(rb'"pid"\s*:\s*"([\x20\x21\x23-\x5b\x5d-\x7e]*)"\s*[,}]')
_ESAF = re.compile(rb'"esaf"\s*:\s*(-?(?:0|[1-9][0-9]{0,17}))\s*[,}]')


@dataclass
class Flight:
    host: bytes
    reply_route: list  # the client's route and delimiter, to answer it ourselves
    key: tuple[str, str] | None
    sent: float


@dataclass
class Host:
    rid: bytes  # its routing id at our backend
    name: str
    capacity: int
    last_heard: float
    tags: set[bytes] = field(default_factory=set)
    served: int = 0
    given_up: int = 0  # requests answered busy because this host went silent

    @property
    def free(self) -> int:
        return self.capacity - len(self.tags)


class Hosts:
    def __init__(self) -> None:
        self.hosts: dict[bytes, Host] = {}
        self.flights: dict[bytes, Flight] = {}
        self.sticky: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.session_load: dict[tuple[tuple[str, str], bytes], int] = {}
        self.stuck: Counter[bytes] = Counter()  # sessions sticky to each host
        self.tags = itertools.count(1)
        self.gone_total = 0

    def heard(self, rid: bytes, beat: hostlink.Heartbeat | None, now: float) -> Host | None:
        """Any message from a host proves it alive; a heartbeat also (re)announces it."""
        host = self.hosts.get(rid)
        if host is None and beat is not None:
            host = self.hosts[rid] = Host(rid, beat.name, beat.capacity, now)
            return host
        if host is not None:
            host.last_heard = now
            if beat is not None:
                host.capacity = beat.capacity
        return None

    def silent(self, now: float) -> list[tuple[Host, list[Flight]]]:
        """Hosts not heard from for HOST_DEAD_AFTER_S, removed, with their flights."""
        dead = [h for h in self.hosts.values() if now - h.last_heard > hostlink.HOST_DEAD_AFTER_S]
        return [(host, self.remove(host)) for host in dead]

    def remove(self, host: Host) -> list[Flight]:
        del self.hosts[host.rid]
        self.gone_total += 1
        flights = [self.finish(tag) for tag in list(host.tags)]
        host.given_up += len(flights)
        return [f for f in flights if f is not None]

    def leaving(self) -> bool:
        """Whether a host said it is shutting down (no capacity): its link's drop is expected."""
        return any(h.capacity == 0 for h in self.hosts.values())

    def next_expiry(self, now: float) -> float | None:
        if not self.hosts:
            return None
        oldest = min(h.last_heard for h in self.hosts.values())
        return max(0.0, oldest + hostlink.HOST_DEAD_AFTER_S - now)

    def choose(self, key: tuple[str, str] | None) -> Host | None:
        """The sticky host if it may take this request, else the freest; None if all are full."""
        open_hosts = [h for h in self.hosts.values() if h.free > 0]
        if not open_hosts:
            return None
        if key is not None:
            rid = self.sticky.get(key)
            host = self.hosts.get(rid) if rid is not None else None
            least = min(self.stuck[h.rid] for h in open_hosts)
            if host is not None and host.free > 0 and self.stuck[host.rid] <= least + 1:
                share = max(1, host.capacity // SESSION_SHARE)
                if self.session_load.get((key, host.rid), 0) < share:
                    self.sticky.move_to_end(key)
                    return host
                return max(open_hosts, key=lambda h: (h.free, h is not host))  # spill, stay sticky
        if key is None:
            return max(open_hosts, key=lambda h: h.free)
        chosen = min(open_hosts, key=lambda h: (self.stuck[h.rid], -h.free))
        self._stick(key, chosen.rid)
        return chosen

    def _stick(self, key: tuple[str, str], rid: bytes) -> None:
        old = self.sticky.pop(key, None)
        if old is not None:
            self.stuck[old] -= 1
        self.sticky[key] = rid
        self.stuck[rid] += 1
        while len(self.sticky) > MAX_STICKY:
            _, evicted = self.sticky.popitem(last=False)
            self.stuck[evicted] -= 1

    def start(self, host: Host, reply_route: list, key: tuple[str, str] | None) -> bytes:
        tag = next(self.tags).to_bytes(hostlink.TAG_BYTES, "big")
        self.flights[tag] = Flight(host.rid, reply_route, key, time.monotonic())
        host.tags.add(tag)
        if key is not None:
            self.session_load[(key, host.rid)] = self.session_load.get((key, host.rid), 0) + 1
        return tag

    def finish(self, tag: bytes, rid: bytes | None = None) -> Flight | None:
        """The flight of ``tag`` (from host ``rid``, if given), now over; None if it is not ours
        any more (answered already: the host was given up) or came from another host."""
        flight = self.flights.get(tag)
        if flight is None or (rid is not None and flight.host != rid):
            return None
        del self.flights[tag]
        host = self.hosts.get(flight.host)
        if host is not None:
            host.tags.discard(tag)
            if rid is not None:
                host.served += 1
        if flight.key is not None:
            load_key = (flight.key, flight.host)
            left = self.session_load.get(load_key, 1) - 1
            if left > 0:
                self.session_load[load_key] = left
            else:
                self.session_load.pop(load_key, None)
        return flight

    def describe(self, now: float) -> list[dict[str, Any]]:
        """Per host, for STATISTICS: what an operator needs to see a host fall behind or away."""
        return [
            {
                "name": h.name,
                "link": h.rid.hex()[:10],  # tells a reconnected host from its old link
                "capacity": h.capacity,
                "credit": h.free,
                "in_flight": len(h.tags),
                "heartbeat_age_s": round(now - h.last_heard, 3),
                "served": h.served,
            }
            for h in self.hosts.values()
        ]


def session_key(body: list) -> tuple[str, str] | None:
    """``(pid, esaf)`` of a request, for sticky routing; None if it is not a JSON object.

    A flat request that names each once, the pid as a plain string and the ESAF as an
    integer or not at all (what every front-end sends), has them read off its bytes (a third
    of a parse); anything else is parsed, and the key is the JSON's own (the last of a
    repeated name). Only the choice of host depends on it: the procmgr parses every request."""
    if len(body) != 1:
        return None
    data = body[0].bytes
    if data.count(b'"pid"') == 1 and data.count(b'"esaf"') <= 1 and data.count(b"{") == 1:
        pid = _PID.search(data)
        esaf = _ESAF.search(data)
        if pid is not None and (esaf is not None or b'"esaf"' not in data):
            if data.lstrip()[:1] == b"{" and data.rstrip()[-1:] == b"}":
                value = pid.group(1).decode("utf-8", "surrogateescape")[:128]
                return value, esaf.group(1).decode("ascii")[:32] if esaf is not None else ""
    try:
        job = json.loads(data)
    except ValueError:  # includes UnicodeDecodeError; the procmgr gives the error reply
        return None
    if not isinstance(job, dict):
        return None
    return str(job.get("pid", ""))[:128], str(job.get("esaf", ""))[:32]
