"""Signed viewer links: a short-lived ``is-web`` URL that opens one file, series or directory.

A link is its own session: a fresh ``pid`` whose session hash the auth server writes (with an
expiry) and may revoke like any other, and a JWT bound to that pid, the ESAF and one ``paths``
prefix (authsign/pathclaim.py) with a short ``exp``. Everything rides in the URL's fragment
(``#pid=...&esaf=...&path=...&token=...``): browsers never send a fragment to a server, so the
token reaches no gateway or proxy access log; the viewer reads it and hands the token to the
gateway in a request body. ``parse`` is the front-end's side, and checks only the shape: the
procmgr verifies the token on every request, as for any other.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authsign import pathclaim, tokens

VIEWER_SCOPE = "jpeg meta spots list tile pixels counts"  # what is-web's viewer asks; never index
MAX_LINK = 3 * tokens.MAX_TOKEN  # a link is a token plus a few short fields
SESSION_MARGIN_S = 60  # the session hash outlives its token by more than the verifier's leeway


@dataclass(frozen=True)
class Link:
    url: str
    pid: str
    esaf: int
    path: str
    token: str
    expires: int


def make(
    key: Ed25519PrivateKey,
    kid: str,
    *,
    base_url: str,
    user: str,
    esaf: int,
    path: str,
    aud: str,
    ttl_s: int = 600,
    scope: str = VIEWER_SCOPE,
    now: float | None = None,
) -> Link:
    """A link to ``path`` in ``esaf``'s home: ``run7/a_0001.cbf`` (a file), ``run7/a_`` (a
    series) or ``run7/`` (a directory). Store its session with ``store`` before handing it out."""
    if (why := pathclaim.problem([path])) is not None:
        raise ValueError(why)
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise ValueError("base_url must be an http(s) URL without a fragment")
    t = int(time.time() if now is None else now)
    pid = "link-" + secrets.token_urlsafe(24)
    token = tokens.issue(key, kid, pid=pid, uid=user, esafs=[esaf], aud=aud, scope=scope,
                         lifetime_s=ttl_s, now=t, paths=[path])  # fmt: skip
    fragment = urlencode({"pid": pid, "esaf": esaf, "path": path, "token": token})
    url = parts._replace(fragment=fragment).geturl()
    return Link(url=url, pid=pid, esaf=esaf, path=path, token=token, expires=t + ttl_s)


def store(redis: Any, link: Link, now: float | None = None) -> None:
    """Write the link's session hash (the token in it, an expiry): revoke-session ends it."""
    left = link.expires - int(time.time() if now is None else now)
    pipe = redis.pipeline(transaction=True)  # no moment without an expiry
    pipe.hset(link.pid, mapping={"isToken": link.token, "link": link.path})
    pipe.expire(link.pid, max(left, 1) + SESSION_MARGIN_S)
    pipe.execute()


def parse(url: str) -> Link:
    """The fields of a link as a front-end receives it; ValueError when it is not one."""
    if not isinstance(url, str) or len(url) > MAX_LINK:
        raise ValueError("not a viewer link")
    fields = parse_qs(urlsplit(url).fragment, strict_parsing=False, max_num_fields=8)
    try:
        (pid,), (esaf,), (path,), (token,) = (fields[k] for k in ("pid", "esaf", "path", "token"))
    except (KeyError, ValueError):
        raise ValueError("not a viewer link") from None
    if not esaf.isdigit() or pathclaim.problem([path]) is not None or not pid.isprintable():
        raise ValueError("not a viewer link")
    return Link(url=url, pid=pid, esaf=int(esaf), path=path, token=token, expires=0)
