"""Signed viewer links at the token level, through the real stack: a link opens its dataset and
nothing else, and stops at expiry and at revocation of its session (is-web's side is not
built on main yet)."""

from __future__ import annotations

import shutil
import time
from urllib.parse import urlsplit

import pytest

from authsign import links
from tests.support.client import ask, error_code


def _link(site, path: str = "thau_0001.cbf", **kw) -> links.Link:
    link = links.make(site.stack.signing_key, site.stack.kid, base_url="https://web.example/view",
                      user=site.user, esaf=site.esaf, path=path, aud="pyis", **kw)  # fmt: skip
    links.store(site.stack.redis, link, now=kw.get("now"))
    return link


def _open(site, link: links.Link, fn: str) -> list[bytes]:
    got = links.parse(link.url)  # what the viewer does with the URL it was given
    job = {
        "type": "jpeg",
        "pid": got.pid,
        "esaf": got.esaf,
        "fn": fn,
        "xsize": 64,
        "auth": got.token,
    }
    return ask(site.endpoint, job)


def test_a_link_opens_its_file_and_nothing_else(site):
    link = _link(site)
    assert _open(site, link, "thau_0001.cbf")[0] == b""
    assert error_code(_open(site, link, "secret/other_group.cbf")) == "forbidden"
    assert error_code(_open(site, link, "escape.cbf")) == "forbidden"


def test_a_directory_link_covers_that_directory(site):
    folder = site.home / "linkdir"
    folder.mkdir()
    try:
        shutil.copyfile(site.home / "thau_0001.cbf", folder / "x_0001.cbf")
        link = _link(site, "linkdir/")
        assert _open(site, link, "linkdir/x_0001.cbf")[0] == b""
        assert error_code(_open(site, link, "thau_0001.cbf")) == "forbidden"
    finally:
        shutil.rmtree(folder)


def test_the_token_rides_in_the_fragment_which_browsers_never_send(site):
    link = _link(site)
    parts = urlsplit(link.url)
    assert link.token in parts.fragment and link.token not in parts.path + parts.query
    assert parts.scheme == "https" and parts.netloc == "web.example"


def test_a_link_stops_at_expiry(site):
    link = _link(site, ttl_s=60, now=time.time() - 3600)
    reply = _open(site, link, "thau_0001.cbf")
    assert error_code(reply) == "unauthorized" and "expired" in reply[0].decode()


def test_a_link_stops_when_its_session_is_revoked(site):
    link = _link(site)
    assert _open(site, link, "thau_0001.cbf")[0] == b""
    site.stack.redis.hset(link.pid, "revoked", "1")  # what is-authsign revoke-session does
    assert error_code(_open(site, link, "thau_0001.cbf")) == "unauthorized"


@pytest.mark.parametrize(
    "url",
    [
        "https://web.example/view",
        "https://web.example/view#pid=a&esaf=1&path=/etc/&token=t",
        "https://web.example/view#pid=a&esaf=x&path=run7/&token=t",
        "https://web.example/view#pid=a&pid=b&esaf=1&path=run7/&token=t",
    ],
)
def test_what_is_not_a_link_is_refused_by_parse(url):
    with pytest.raises(ValueError):
        links.parse(url)


def test_make_refuses_a_bad_path_or_base_url():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    common = dict(user="u", esaf=1, aud="pyis")
    with pytest.raises(ValueError):
        links.make(key, "k", base_url="https://w/", path="../x", **common)
    with pytest.raises(ValueError):
        links.make(key, "k", base_url="javascript:alert(1)", path="run7/", **common)
