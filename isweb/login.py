"""One-time login links: the auth server (or ``is-dev --web``) stores a random code naming the
web session in the web host's Redis; ``/login?code=`` trades it, once, for the session cookie.

The code is consumed with GETDEL, so a link that leaked into a browser history or a proxy log
is already spent. The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site
can make the browser send it) and Secure behind TLS; the gateway gains no authority from it:
the image server checks the session's signed access object on every request.
"""

from __future__ import annotations

import re
import secrets

import redis.asyncio as aioredis
from aiohttp import web

from isweb.guard import log
from pyis_common.config import WebConfig

LOGIN_KEY = "pyis:weblogin:{}"  # Redis key of a one-time code; its value is the session id
CODE = re.compile(r"[A-Za-z0-9_-]{16,128}")
LINK_VIEW_COOKIE = "pyis_link"  # set by isweb/links.py: what a signed link shows
CODE_TTL_S = 600  # a login link is clicked within minutes of being made
REDIS_TIMEOUT_S = 2.0


def new_code() -> str:
    return secrets.token_urlsafe(24)


def store_code(client, pid: str, code: str | None = None, ttl_s: int = CODE_TTL_S) -> str:
    """What the auth server does (synchronous redis-py client): a link for session ``pid``."""
    code = code or new_code()
    client.set(LOGIN_KEY.format(code), pid, ex=ttl_s)
    return code


class Login:
    def __init__(self, cfg: WebConfig) -> None:
        self.cfg = cfg
        self.redis = (
            aioredis.Redis.from_url(
                cfg.login_redis,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            if cfg.login_redis
            else None
        )

    async def login(self, request: web.Request) -> web.StreamResponse:
        code = request.query.get("code", "")
        if self.redis is None:
            raise web.HTTPNotFound(text="login links are not enabled on this gateway")
        if not CODE.fullmatch(code):
            raise web.HTTPBadRequest(text="this login link is malformed")
        try:
            pid = await self.redis.getdel(LOGIN_KEY.format(code))
        except aioredis.RedisError as exc:
            log.warning("login store unavailable: %s", type(exc).__name__)
            raise web.HTTPServiceUnavailable(text="the login store is unavailable") from None
        if not pid:
            raise web.HTTPForbidden(text="this login link is unknown, used or expired")
        response = web.HTTPSeeOther("/")
        self.set_cookie(response, pid.decode("utf-8", "replace") if isinstance(pid, bytes) else pid)
        response.del_cookie(LINK_VIEW_COOKIE, path="/")  # a full session, no link's narrow view
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        await request.read()  # bounded by client_max_size: a large body is refused (413)
        response = web.HTTPSeeOther("/")
        response.del_cookie(self.cfg.cookie_name, path="/")
        response.del_cookie(LINK_VIEW_COOKIE, path="/")
        raise response

    def set_cookie(self, response: web.StreamResponse, pid: str) -> None:
        response.set_cookie(
            self.cfg.cookie_name,
            pid,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.cfg.secure_cookie,
        )

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
