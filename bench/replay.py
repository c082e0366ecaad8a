"""bench/web.py's baseline: the page's API calls replayed from Python, over ZeroMQ (the wire
requests is-web's own ``build_job`` makes of them) and over HTTP through is-web, six at a time
as a browser's six connections send them."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import zmq

from isweb.api import build_job

CONNECTIONS = 6  # what a browser opens to one HTTP/1.1 host
NUDGE = 0.25  # added to explicit levels in the baseline: no exact-repeat cache hit


class Pool:
    """CONNECTIONS clients sending their share of the requests in turn, as a browser's six
    connections do."""

    def __init__(self, clients: list) -> None:
        self.clients = clients
        self.pool = ThreadPoolExecutor(len(clients))

    def one(self, client, item) -> None:
        raise NotImplementedError

    def many(self, items: list) -> None:
        n = len(self.clients)
        futures = [
            self.pool.submit(lambda c, share: [self.one(c, i) for i in share], client, items[k::n])
            for k, client in enumerate(self.clients)
        ]
        for f in futures:
            f.result()


class Wire(Pool):
    """The baseline: the same requests over ZeroMQ, a REQ socket per connection."""

    def __init__(self, endpoint: str, pid: str) -> None:
        self.pid = pid
        socks = []
        for _ in range(CONNECTIONS):
            s = zmq.Context.instance().socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(endpoint)
            socks.append(s)
        super().__init__(socks)

    def one(self, sock: zmq.Socket, job: dict) -> None:
        sock.send(json.dumps({"pid": self.pid, **job}).encode())
        if not sock.poll(30000):
            raise TimeoutError("no reply")
        reply = sock.recv_multipart()
        if len(reply) == 1:
            raise RuntimeError(reply[0].decode())


class Http(Pool):
    """The same calls over HTTP from Python (keep-alive connections): is-web's share of the
    browser's time, without the browser. A session of its own, so the per-session rate
    limit counts only the browser's calls."""

    def __init__(self, base_url: str, pid: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.cookie = f"pyis_session={pid}"
        host, port = parts.hostname or "127.0.0.1", parts.port
        super().__init__(
            [http.client.HTTPConnection(host, port, timeout=30) for _ in range(CONNECTIONS)]
        )

    def one(self, conn: http.client.HTTPConnection, path: str) -> None:
        conn.request("GET", path, headers={"Cookie": self.cookie})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")


def replayed(calls: list[dict], pid: str, rename: tuple[str, str] | None = None) -> list[dict]:
    """The wire requests of the page's API calls; explicit levels nudged, ``fn`` renamed."""
    jobs = []
    for call in calls:
        parts = urllib.parse.urlsplit(call["url"])
        job = build_job(
            parts.path.rsplit("/", 1)[1], dict(urllib.parse.parse_qsl(parts.query)), pid
        )
        job.pop("pid")
        if "contrast" in job:
            job["contrast"] += NUDGE
        if rename:
            job["fn"] = job["fn"].replace(*rename)
        jobs.append(job)
    return jobs


def http_paths(calls: list[dict], rename: tuple[str, str] | None = None) -> list[str]:
    """The page's API calls as paths for Http: explicit levels nudged twice as far as the
    ZeroMQ replay's (no exact repeat of either), ``fn`` renamed."""
    paths = []
    for call in calls:
        parts = urllib.parse.urlsplit(call["url"])
        query = dict(urllib.parse.parse_qsl(parts.query))
        if "contrast" in query:
            query["contrast"] = str(float(query["contrast"]) + 2 * NUDGE)
        if rename:
            query["fn"] = query["fn"].replace(*rename)
        paths.append(f"{parts.path}?{urllib.parse.urlencode(query)}")
    return paths
