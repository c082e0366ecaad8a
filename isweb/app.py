"""The aiohttp application: the viewer's static files, the login link and the API.

No call is answered from the gateway's own knowledge: an API call without a session cookie is
refused here (there is nobody to ask for), every other one is relayed as one wire request.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from isweb import api
from isweb.follow import FollowHub
from isweb.guard import RateLimit, security_headers
from isweb.links import LinkOpener
from isweb.login import Login
from isweb.upstream import Upstream
from pyis_common.config import WebConfig
from pyis_common.errors import Busy, Unauthorized

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDOR = HERE / "vendor"  # Leaflet, copied from npm by .ci/install
MAX_BODY = 1024  # logout is an empty POST; /link reads its own bounded body (isweb/links.py)


def make_app(cfg: WebConfig) -> web.Application:
    app = web.Application(middlewares=[security_headers], client_max_size=MAX_BODY)
    app["cookie_name"] = cfg.cookie_name
    upstream = Upstream(cfg.endpoint, cfg.request_timeout_s, cfg.max_in_flight)
    login = Login(cfg)
    limit = RateLimit(cfg.session_rate)
    follow = FollowHub(cfg)

    def admit(request: web.Request) -> str | web.Response:
        """The session of an API call, or the refusal that answers it."""
        pid = request.cookies.get(cfg.cookie_name)
        if not pid:
            return api.error_response(Unauthorized("no session: open a login link first"))
        if len(request.query_string) > cfg.max_query_bytes:
            raise web.HTTPRequestURITooLong()
        if not limit.allow(pid):
            return api.error_response(Busy("too many requests from this session; slow down"), 429)
        return pid

    async def relay(request: web.Request) -> web.StreamResponse:
        pid = admit(request)
        if not isinstance(pid, str):
            return pid
        name, query = request.match_info["name"], dict(request.query)
        accept = request.headers.get("Accept-Encoding", "")
        return await api.call(upstream, name, query, pid, accept)

    async def follow_stream(request: web.Request) -> web.StreamResponse:
        pid = admit(request)
        return pid if not isinstance(pid, str) else await follow.stream(request, pid)

    async def index(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def shutdown(_app: web.Application) -> None:
        await follow.shutdown()

    async def cleanup(_app: web.Application) -> None:
        upstream.close()
        follow.close()
        await login.close()

    async def favicon(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "favicon.svg")

    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/login", login.login)
    app.router.add_post("/logout", login.logout)
    app.router.add_post("/link", LinkOpener(upstream, login).open)  # a signed viewer link
    app.router.add_get("/api/follow", follow_stream)  # before the generic call
    app.router.add_get("/api/looks", api.looks)  # the colour tables: static, no wire call
    app.router.add_get("/api/{name}", relay)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    if VENDOR.is_dir():
        app.router.add_static("/vendor/", VENDOR, follow_symlinks=False)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    return app
