"""Signed viewer links in a real headless browser, through is-web and the real stack.

A link (``is-authsign link``, authsign/links.py) opens exactly its dataset: the token is taken
from the URL's fragment and posted to the gateway, which gives the browser the link's session
only once the image server accepted it. After expiry or revocation the page says so. The token
never reaches the gateway's logs, the address bar or the history.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from http.client import HTTPMessage
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authsign import links
from procmgr.__main__ import dev_user
from tests.support import browser as chrome
from tests.support.website import web_site

MISSING = chrome.chromium_missing()  # in CI (``CI`` set) a missing browser fails, never skips
pytestmark = pytest.mark.skipif(bool(MISSING and not os.environ.get("CI")), reason=str(MISSING))


@pytest.fixture(scope="module")
def site(testdata: Path):
    assert MISSING is None, MISSING
    with web_site(testdata) as s:
        yield s


@pytest.fixture(scope="module")
def chromium(site):
    with chrome.browser() as b:
        yield b


@pytest.fixture
def page(chromium):
    """A fresh browser profile (no cookie) per test."""
    context = chromium.new_context(viewport={"width": 1200, "height": 800})
    yield context.new_page()
    context.close()


def make_link(site, path: str, **kw) -> links.Link:
    """What the auth server does for a front-end: sign a link and store its session."""
    link = links.make(site.stack.signing_key, site.stack.kid, base_url=site.url + "/",
                      user=dev_user(), esaf=0, path=path, aud="pyis", **kw)  # fmt: skip
    links.store(site.stack.redis, link, now=kw.get("now"))
    return link


def entries(page) -> list[str]:
    return page.locator("#entries button").all_text_contents()


def refusal(page) -> str:
    message = page.locator("#message")
    message.wait_for(state="visible")
    return message.inner_text()


def status_of(page, api_path: str) -> int:
    return int(page.evaluate(f"async () => (await fetch({json.dumps(api_path)})).status"))


def test_a_series_link_shows_its_series_and_nothing_else(site, page):
    link = make_link(site, "series/thau_")
    page.goto(link.url)
    chrome.wait_painted(page, 0, "the link's first frame painted")
    assert page.inner_text("#title") == "series/thau_0001.cbf"
    assert entries(page) == ["thau_####.cbf  1–2 (2)"]
    assert link.token not in page.url and "token=" not in page.url
    assert "token" not in page.evaluate("() => location.href")
    before = chrome.paints(page)
    page.click("#next")
    chrome.wait_until(page, lambda: page.inner_text("#title") == "series/thau_0002.cbf", "frame 2")
    chrome.wait_painted(page, before, "frame 2 painted")
    page.locator("#crumbs button", has_text="home").click()  # home is the link's folder
    chrome.wait_until(page, lambda: entries(page) == ["thau_####.cbf  1–2 (2)"], "the link home")
    assert status_of(page, "/api/meta?fn=marccd/somedata_0001.mccd") == 403
    assert status_of(page, "/api/list?fn=") == 403  # the ESAF root is outside the link
    cookie = {c["name"]: c for c in page.context.cookies()}["pyis_session"]
    assert cookie["value"] == link.pid and cookie["httpOnly"]


def test_a_file_link_shows_that_file_alone(site, page):
    page.goto(make_link(site, "series/thau_0002.cbf").url)
    chrome.wait_painted(page, 0, "the linked file painted")
    assert page.inner_text("#title") == "series/thau_0002.cbf"
    assert entries(page) == ["thau_0002.cbf"]  # its folder, listing only what the link covers
    assert status_of(page, "/api/image?fn=series/thau_0001.cbf") == 403


def test_a_directory_link_shows_that_directory(site, page):
    link = make_link(site, "eiger/")
    page.goto(link.url)
    chrome.wait_until(page, lambda: entries(page), "the directory listed")
    assert entries(page) == ["eiger2_data_000001.h5  (2 frames)"]
    before = chrome.paints(page)
    page.locator("#entries button").first.click()
    chrome.wait_painted(page, before, "the Eiger file painted")
    assert status_of(page, "/api/meta?fn=series/thau_0001.cbf") == 403


def test_an_expired_link_is_refused_in_the_page(site, page):
    link = make_link(site, "series/thau_", ttl_s=60, now=time.time() - 3600)
    page.goto(link.url)
    assert "expired" in refusal(page)
    assert page.context.cookies() == []  # no session was handed out
    assert entries(page) == []


def test_a_revoked_link_is_refused_in_the_page(site, page, chromium):
    link = make_link(site, "series/thau_")
    page.goto(link.url)
    chrome.wait_painted(page, 0, "the link painted before revocation")
    site.stack.redis.hset(link.pid, "revoked", "1")  # what is-authsign revoke-session does
    page.reload()
    assert "revoked" in refusal(page)  # the open tab's next call
    fresh = chromium.new_context().new_page()
    try:
        fresh.goto(link.url)
        assert "revoked" in refusal(fresh)  # the link itself
        assert fresh.context.cookies() == []
    finally:
        fresh.context.close()


def post_link(site, body: bytes, headers: dict[str, str]) -> tuple[int, dict, str | None]:
    req = urllib.request.Request(site.url + "/link", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read()), _cookies(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), _cookies(exc.headers)


def _cookies(headers: HTTPMessage) -> str | None:
    return "; ".join(headers.get_all("Set-Cookie") or []) or None


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b'{"token": "x"}', {"Content-Type": "text/plain"}, 400),  # a cross-site form's type
        (b'{"token": "x"}', {**JSON, "Origin": "https://evil.example"}, 403),
        (b"[1, 2]", JSON, 400),
        (b"{", JSON, 400),
        (b'{"token": "not.a.jwt"}', JSON, 400),
        (json.dumps({"token": "a" * 20000}).encode(), JSON, 400),
    ],
)
def test_a_bad_link_post_gets_one_refusal_and_no_cookie(site, body, headers, status):
    got, answer, cookie = post_link(site, body, headers)
    assert got == status and answer["error"] in ("bad_request", "forbidden")
    assert cookie is None


def test_a_forged_link_gets_no_session(site):
    """A well-formed link signed by a key the CA never certified, under the real kid: the
    gateway believes its claims only after the image server accepted it."""
    forged = links.make(Ed25519PrivateKey.generate(), site.stack.kid, base_url=site.url + "/",
                        user=dev_user(), esaf=0, path="series/", aud="pyis")  # fmt: skip
    links.store(site.stack.redis, forged)
    got, answer, cookie = post_link(site, json.dumps({"token": forged.token}).encode(), JSON)
    assert (got, answer["error"], cookie) == (401, "unauthorized", None)


def test_the_token_is_in_no_gateway_log_line(site):
    link = make_link(site, "series/")
    got, answer, cookie = post_link(site, json.dumps({"token": link.token}).encode(), JSON)
    assert got == 200 and answer == {"esaf": 0, "path": "series/", "dir": "series"}
    assert cookie is not None and link.pid in cookie and link.token not in cookie
    log = (site.stack.workdir / "web.log").read_text()
    assert "POST /link 200" in log
    assert link.token not in log and link.token.split(".")[2] not in log
    assert link.pid not in log
