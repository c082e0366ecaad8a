"""Signed viewer links in the gateway: ``POST /link`` trades a link's token for the session.

A link (authsign/links.py) carries its token in the URL's fragment, which browsers never send;
the viewer (static/js/link.js) posts it here in a JSON body, so it reaches no URL, history or
access log, and no log line here names it. The gateway gains no authority from it: the claims
are read, unverified, only to learn which session, ESAF and path the link names; then the image
server is asked one ``list`` of the link's folder with the token inline, and only when it
accepts (signature, expiry, a session not revoked, the path) does the browser get the session's
cookie. The image server checks the session's token on every later call, so expiry and
revocation end the view at the next one.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any
from urllib.parse import quote, urlsplit

import jwt
from aiohttp import web

from authsign import pathclaim, tokens
from isweb import api
from isweb.login import LINK_VIEW_COOKIE, Login
from isweb.upstream import Upstream
from pyis_common.errors import BadRequest, Forbidden, PyisError
from pyis_common.request import MAX_PID

MAX_LINK_BODY = tokens.MAX_TOKEN + 256  # {"token": "..."}: one token and a little JSON


class LinkOpener:
    def __init__(self, upstream: Upstream, login: Login) -> None:
        self.upstream = upstream
        self.login = login

    async def open(self, request: web.Request) -> web.StreamResponse:
        """The link's session as this browser's cookie, and what the link shows; or the
        image server's refusal (an expired or revoked link) as JSON, with no cookie."""
        try:
            token = await _token_of(request)
            pid, esaf, path = _claims(token)
            folder = path if path.endswith("/") else posixpath.dirname(path)
            job = {"pid": pid, "type": "list", "fn": folder, "esaf": esaf, "limit": 1}
            await self.upstream.ask(job | {"auth": token})  # the image server decides
        except PyisError as exc:
            response = api.error_response(exc)
        else:
            shown = {"esaf": esaf, "path": path, "dir": folder.rstrip("/")}
            response = web.json_response(shown)
            self.login.set_cookie(response, pid)
            text = quote(json.dumps(shown, separators=(",", ":")), safe="")
            response.set_cookie(LINK_VIEW_COOKIE, text, path="/", samesite="Strict",
                                secure=self.login.cfg.secure_cookie)  # fmt: skip
        response.headers["Cache-Control"] = "no-store"
        return response


async def _token_of(request: web.Request) -> str:
    """The token of a same-origin JSON body ``{"token": ...}``, bounded before it is read."""
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise Forbidden("a link is opened only by this gateway's own page")  # login CSRF
    if request.content_type != "application/json":
        raise BadRequest("a link is posted as application/json")
    size = request.content_length
    if size is None or size > MAX_LINK_BODY:
        raise BadRequest(f"a link body is at most {MAX_LINK_BODY} bytes, with its length")
    try:
        body = json.loads(await request.content.readexactly(size))
    except (ValueError, EOFError):  # IncompleteReadError is an EOFError
        raise BadRequest("the link body is not JSON") from None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token or len(token) > tokens.MAX_TOKEN:
        raise BadRequest("the link body holds no token")
    return token


def _claims(token: str) -> tuple[str, int, str]:
    """(pid, esaf, path) the token names; unverified: they only address the check above."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise BadRequest("this is not a viewer link's token") from None
    pid, esafs, paths = claims.get("pid"), claims.get("allowedESAFs"), claims.get("paths")
    if not isinstance(pid, str) or not pid or len(pid) > MAX_PID or not pid.isprintable():
        raise BadRequest("this is not a viewer link's token")
    if not isinstance(esafs, list) or len(esafs) != 1 or not isinstance(esafs[0], int):
        raise BadRequest("a viewer link names exactly one ESAF")
    if not isinstance(paths, list) or len(paths) != 1 or pathclaim.problem(paths) is not None:
        raise BadRequest("a viewer link names exactly one valid path")
    return pid, esafs[0], paths[0]
