"""A real request through client -> is_proxy -> procmgr -> privilege-dropped worker -> JPEG."""

from __future__ import annotations

import io

from PIL import Image

from tests.support.client import ask, error_code, meta_of


def thau(site, pid: str, **fields) -> dict:
    """A request for the site's Pilatus 6M frame in session ``pid``."""
    return {"pid": pid, "esaf": site.esaf, "type": "jpeg", "fn": "thau_0001.cbf", **fields}


def test_jpeg_has_four_frames_and_decodes_at_the_requested_width(site):
    pid = site.session()
    reply = ask(site.endpoint, thau(site, pid, xsize=512, tag={"client": "test", "n": 1}))
    assert len(reply) == 4
    echoed, meta = meta_of(reply)
    assert echoed["tag"] == {"client": "test", "n": 1}
    assert echoed["pid"] == pid and echoed["fn"] == "thau_0001.cbf"
    assert isinstance(echoed["wval_used"], int | float)
    assert echoed["bval_used"] >= echoed["wval_used"] + 1
    assert (meta["x_pixels_in_detector"], meta["y_pixels_in_detector"]) == (2463, 2527)
    image = Image.open(io.BytesIO(reply[3]))
    assert image.format == "JPEG"
    assert image.width == 512
    assert image.height == round(512 * 2527 / 2463)  # aspect kept; the C server made it square
    assert reply[1] == reply[1].strip() and b", " not in reply[1]  # compact JSON
    assert list(echoed) == sorted(echoed)


def test_explicit_levels_are_echoed(site):
    job = thau(site, site.session(), xsize=256, contrast=50, wval=2)
    echoed, _ = meta_of(ask(site.endpoint, job))
    assert (echoed["wval_used"], echoed["bval_used"]) == (2, 50)


def test_missing_file_is_not_found_and_the_stack_stays_up(site):
    pid = site.session()
    reply = ask(site.endpoint, thau(site, pid, fn="nope.cbf"))
    assert error_code(reply) == "not_found"
    again = ask(site.endpoint, thau(site, pid))
    assert again[0] == b"" and len(again) == 4


def test_meta_job_has_no_payload(site):
    pid = site.session()
    reply = ask(site.endpoint, thau(site, pid, type="meta"))
    assert len(reply) == 3
    _, meta = meta_of(reply)
    assert meta["x_pixels_in_detector"] == 2463


def status(site) -> dict:
    _, answer = meta_of(ask(site.endpoint, {"pid": "monitor", "type": "status"}))
    return answer


def test_status_needs_no_access_object_and_counts_outcomes(site):
    before = status(site)
    assert before["uptime_s"] > 0
    pid = site.session()
    assert len(ask(site.endpoint, thau(site, pid, type="meta"))) == 3
    assert error_code(ask(site.endpoint, thau(site, pid, fn="nope.cbf"))) == "not_found"
    after = status(site)["requests"]
    counted = before["requests"]
    assert after.get("ok", 0) >= counted.get("ok", 0) + 2  # the first status and the meta
    assert after.get("not_found", 0) == counted.get("not_found", 0) + 1
