"""is-web against the real stack: the session cookie, the one-time login, refusals relayed as
the image server said them, bounded calls, security headers, logs without the session id (the
viewer's job types are in test_web_viewer.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pyisdev import procs
from tests.support.client import ask, error_code
from tests.support.webget import NoRedirect, api, get
from tests.support.website import SECRET, web_site


@pytest.fixture(scope="module")
def site(testdata: Path):
    with web_site(testdata) as s:
        yield s


def test_login_link_sets_a_strict_cookie_once(site):
    link = site.login_url()[len(site.url) :]
    status, headers, _ = get(site, link)
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert f"pyis_session={site.pid}" in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, headers, body = get(site, link)  # spent
    assert status == 403 and b"unknown, used or expired" in body
    assert "Set-Cookie" not in headers


def test_calls_without_a_session_are_refused(site):
    status, _, body = get(site, "/api/list")
    assert status == 401
    assert json.loads(body)["error"] == "unauthorized"


def test_a_forged_session_gets_the_image_servers_refusal(site):
    status, _, body = get(site, "/api/list?fn=series", "not-a-session")
    assert status == 401
    assert json.loads(body)["error"] == "unauthorized"


def test_every_response_carries_a_strict_policy(site):
    for path in ("/", "/static/js/main.js", "/api/list"):
        _, headers, _ = get(site, path, site.pid)
        csp = headers["Content-Security-Policy"]
        assert (
            "script-src 'self'" in csp
            and "unsafe-inline" not in csp
            and "default-src 'none'" in csp
        )
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_the_favicon_is_cached_and_api_replies_are_not(site):
    """Chromium fetches the favicon again whenever the URL (the deep-link hash) changes: a
    cached one costs no request beside a contrast change's overview."""
    status, headers, _ = get(site, "/static/favicon.svg")
    assert status == 200 and headers["Cache-Control"] == "max-age=86400"
    _, headers, _ = get(site, "/api/list", site.pid)
    assert headers["Cache-Control"] == "no-store"


def test_static_files_include_the_vendored_leaflet(site):
    status, headers, body = get(site, "/vendor/leaflet/leaflet-src.esm.js")
    assert status == 200 and b"export {" in body
    assert "javascript" in headers["Content-Type"]


def test_refusals_keep_the_image_servers_words(site):
    status, body = api(site, "image", fn=f"odd/{SECRET}")
    assert status == 403 and body["error"] == "forbidden"
    assert body["message"] == f"permission denied: odd/{SECRET}"
    status, body = api(site, "image", fn="../../etc/passwd")
    assert status == 403 and body["message"] == "'fn' leaves the ESAF home"
    status, body = api(site, "meta", fn="series/none_0001.cbf")
    assert status == 404 and body["error"] == "not_found"


def test_bad_parameters_are_refused_by_the_gateway(site):
    status, body = api(site, "tile", fn="series/thau_0001.cbf", level="x")
    assert status == 400 and body["message"] == "parameter 'level' has a bad value"
    status, body = api(site, "tile", fn="series/thau_0001.cbf", pid="other")
    assert status == 400 and "unknown parameter 'pid'" in body["message"]
    status, _, _ = get(site, "/api/list?fn=" + "a" * 7000, site.pid)
    assert status in (400, 414)


def test_a_body_is_refused(site):
    req = urllib.request.Request(site.url + "/logout", data=b"x" * 5000, method="POST")
    try:
        urllib.request.urlopen(req, timeout=10)
        status = 200
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status == 413


def test_new_job_types_are_in_the_default_token_scope(site):
    pid, token = site.stack.token("nobody", [0])
    for jtype in ("list", "tile", "pixels", "counts"):
        reply = ask(
            site.stack.endpoint,
            {
                "pid": pid,
                "auth": token,
                "type": jtype,
                "fn": "series" if jtype == "list" else "series/thau_0001.cbf",
            },
        )
        assert reply[0] == b"", reply[0][:200]
    pid, token = site.stack.token("nobody", [0], scope="jpeg")
    reply = ask(site.stack.endpoint, {"pid": pid, "auth": token, "type": "list", "fn": "series"})
    assert error_code(reply) == "forbidden"


def test_the_gateway_log_holds_no_session_id(site):
    get(site, "/api/list?fn=series", site.pid)
    log = (site.stack.workdir / "web.log").read_text()
    assert "GET /api/list 200" in log
    assert site.pid not in log and "code=" not in log


def test_is_dev_web_prints_a_working_login_link(site):
    """``is-dev --web``: the printed link logs a browser in to the dev session, once."""
    proc = procs.Proc(
        [*procs.pyis_command("pyisdev"), "--data", str(site.data), "--web"],
        lambda line: line.startswith("Ctrl-C"),
    )
    try:
        proc.wait_ready()
        (line,) = [ln for ln in proc.lines if "viewer: open" in ln]
        link = line.split()[2]
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(link, timeout=30)
        except urllib.error.HTTPError as exc:
            assert exc.code == 303 and "pyis_session=" in exc.headers["Set-Cookie"]
            cookie = exc.headers["Set-Cookie"].split(";")[0]
        base = link.split("/login")[0]
        req = urllib.request.Request(base + "/api/list?fn=series", headers={"Cookie": cookie})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read())["meta"]["entries"][0]["template"] == "thau_####.cbf"
    finally:
        assert proc.stop() == 0
