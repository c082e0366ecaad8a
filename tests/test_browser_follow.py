"""The viewer's "follow" toggle in a real headless browser (Debian's chromium via Playwright) on
the real stack: with a series open and follow on, frames written into its folder the way
detectors write them (a temporary name then rename; write then close) appear in the page, with
their number and age, and a folder the session may not read is refused in the page."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support import browser as chrome
from tests.support.detector import write_frame
from tests.support.following import parked, wait_for
from tests.support.website import web_site

# the picture at the view's resolution: the overview at its pyramid level, or tiles zoomed in
VIEW = re.compile(r"/api/(tile|image)\?")
AGE = re.compile(r"^frame (\d+) · (\d+(\.\d)?) s old$")


@pytest.fixture(scope="module")
def site(testdata: Path):
    chrome.require_chromium()
    with web_site(testdata) as s:
        yield s


@pytest.fixture
def page(site):
    with chrome.browser() as b:
        page = chrome.watched_page(b, 1200, 800)
        page.tiles, page.follows = [], []
        page.on("request", lambda r: page.tiles.append(r.url) if VIEW.search(r.url) else None)
        page.on("request", lambda r: page.follows.append(r.url) if "/api/follow" in r.url else None)
        chrome.log_in(page, site)
        yield page
        page.close()


def shown(page, fn: str) -> None:
    chrome.wait_until(
        page,
        lambda: (
            page.get_attribute("#follow-status", "data-fn") == fn
            and page.inner_text("#title") == fn
        ),
        f"{fn} on screen",
    )


def test_following_a_series_shows_each_new_frame_with_its_number_and_age(page, site, testdata):
    before = chrome.paints(page)
    page.locator("#entries button", has_text="series").first.click()
    page.locator("#entries button", has_text="thau_####.cbf").first.click()
    chrome.wait_painted(page, before, "the first frame painted")
    waiting = parked(site)
    page.locator("#follow").check()
    wait_for(lambda: parked(site) > waiting, "the viewer's long-poll parked at the worker")
    first = page.locator("#map").screenshot()

    write_frame(testdata / "cbf/run2_1_00148.cbf", site.data / "series/thau_0003.cbf", rename=True)
    shown(page, "series/thau_0003.cbf")
    number, age, _ = AGE.match(page.inner_text("#follow-status")).groups()
    assert number == "3" and float(age) < 60
    assert page.input_value("#jump") == "3"
    assert page.locator("#map").screenshot() != first  # another picture, not only a title

    write_frame(testdata / "cbf/thau_3_2_0002.cbf", site.data / "series/thau_0004.cbf")
    shown(page, "series/thau_0004.cbf")
    assert AGE.match(page.inner_text("#follow-status")).group(1) == "4"
    assert page.is_checked("#follow")
    chrome.wait_until(  # the view's own resolution of the newest frame once the stream pauses
        page, lambda: any("thau_0004" in url for url in page.tiles), "the newest frame's view"
    )

    page.locator("#follow").uncheck()
    assert page.inner_text("#follow-status") == ""
    assert page.errors == []


def test_followed_frames_keep_the_chosen_scale_and_colour_map(page, site, testdata):
    before = chrome.paints(page)
    page.locator("#entries button", has_text="series").first.click()
    page.locator("#entries button", has_text="thau_####.cbf").first.click()
    chrome.wait_painted(page, before, "the first frame painted")
    page.select_option("#scale", "sqrt")
    page.select_option("#colormap", "viridis")
    waiting = parked(site)
    page.locator("#follow").check()
    wait_for(lambda: parked(site) > waiting, "the viewer's long-poll parked at the worker")
    assert page.follows and "scale=sqrt" in page.follows[-1], page.follows
    assert "colormap=viridis" in page.follows[-1]
    write_frame(testdata / "cbf/run2_1_00148.cbf", site.data / "series/thau_0009.cbf", rename=True)
    shown(page, "series/thau_0009.cbf")
    picture = np.asarray(Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("RGB"))
    centre = picture[200:500, 200:500].astype(int)
    assert np.abs(centre[:, :, 0] - centre[:, :, 2]).mean() > 20  # viridis: not a grey ramp
    page.locator("#follow").uncheck()
    assert page.errors == []


def test_following_a_folder_the_session_may_not_read_shows_the_refusal(page, site, testdata):
    folder = site.data / "closing"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    write_frame(testdata / "cbf/l-cyst_01_00001.cbf", folder / "c_0001.cbf")
    page.locator("#crumbs button", has_text="home").click()  # a listing with the new folder
    page.locator("#entries button", has_text="closing").first.click()
    page.wait_for_selector("#entries button:has-text('c_0001.cbf')")
    os.chmod(folder, 0o700)  # root's: the session's worker (nobody) may no longer read it
    page.locator("#follow").click()  # not check(): the refusal may untick it at once
    chrome.wait_until(page, lambda: page.is_visible("#message"), "the refusal in the page")
    assert page.inner_text("#message").startswith("forbidden: ")
    assert not page.is_checked("#follow")
