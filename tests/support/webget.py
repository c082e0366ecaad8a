"""HTTP calls to is-web with a session cookie, for the web tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request


def get(site, path: str, pid: str | None = None, method: str = "GET"):
    """(status, headers, body) of one HTTP call with the session cookie ``pid``."""
    req = urllib.request.Request(site.url + path, method=method)
    if pid is not None:
        req.add_header("Cookie", f"pyis_session={pid}")
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def api(site, call: str, **params) -> tuple[int, dict]:
    query = urllib.parse.urlencode(params)
    status, _, body = get(site, f"/api/{call}?{query}", site.pid)
    return status, json.loads(body)
