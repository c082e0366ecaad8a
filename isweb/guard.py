"""What every response carries and every request must pass: security headers, a bounded
query, a per-session rate, and an access log line that never holds the session id."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

# no inline script or style, nothing from another origin: a file name that reached the page as
# markup could still run nothing. Leaflet sets element.style from script, which CSP allows.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MAX_SESSIONS = 10_000  # rate buckets kept; the least recently seen is dropped first
BURST_S = 2.0  # a bucket holds this many seconds of the rate: a burst of tiles is fine


def session_hash(pid: str) -> str:
    """What a log line may say about a session: the hash the procmgr logs too, never the id."""
    return hashlib.sha256(pid.encode()).hexdigest()[:10]


class RateLimit:
    """A token bucket per session: ``rate`` requests a second, bursts of BURST_S seconds."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, pid: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        cap = self.rate * BURST_S
        tokens, seen = self.buckets.pop(pid, (cap, now))
        tokens = min(cap, tokens + (now - seen) * self.rate)
        ok = tokens >= 1.0
        self.buckets[pid] = (tokens - 1.0 if ok else tokens, now)
        while len(self.buckets) > MAX_SESSIONS:
            self.buckets.popitem(last=False)
        return ok


FAVICON = "/static/favicon.svg"


@web.middleware
async def security_headers(request: web.Request, handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers.update(SECURITY_HEADERS)
    if request.path.startswith("/api/") or request.path == "/login":
        response.headers["Cache-Control"] = "no-store"
    elif request.path == FAVICON:  # chromium asks for it again on every new URL (the hash)
        response.headers["Cache-Control"] = "max-age=86400"
    if isinstance(response, web.HTTPException):
        raise response
    return response


class AccessLogger(AbstractAccessLogger):
    """Method, path (no query: it holds login codes and file names), status, bytes, time."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        cookie = request.app.get("cookie_name", "") if isinstance(request, web.Request) else ""
        pid = request.cookies.get(cookie) if cookie else None
        self.logger.info(
            "%s %s %s %s %.1fms session=%s",
            request.method,
            request.path[:200],
            response.status,
            response.body_length,
            time * 1000,
            session_hash(pid) if pid else "-",
        )


log = logging.getLogger("isweb")
