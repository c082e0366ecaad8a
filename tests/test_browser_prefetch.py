"""Next frame, prefetched: once a frame of a series is on screen the page fetches the next
one's overview and counts (one frame ahead, never more), so "next" paints what has arrived and
its contrast is painted in the page at once; a jump elsewhere does not use it. Debian's
chromium (Playwright) on the real stack."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.support import browser as chrome
from tests.support.website import web_site

FRAMES = 5
NAME = re.compile(r"fn=long%2Fl_(\d{4})\.cbf")


@pytest.fixture(scope="module")
def site(testdata: Path):
    chrome.require_chromium()
    with web_site(testdata) as s:
        folder = s.data / "long"
        folder.mkdir()
        os.chmod(folder, 0o755)
        for i in range(1, FRAMES + 1):
            source = testdata / f"cbf/thau_3_2_000{1 + i % 2}.cbf"
            shutil.copyfile(source, folder / f"l_{i:04d}.cbf")
            os.chmod(folder / f"l_{i:04d}.cbf", 0o644)
        yield s


@pytest.fixture(scope="module")
def page(site):
    with chrome.browser() as b:
        page = chrome.watched_page(b)
        page.asked = []
        page.on("request", lambda r: page.asked.append(r.url) if "/api/" in r.url else None)
        chrome.log_in(page, site)
        yield page


def asked(page, call: str, number: int) -> list[str]:
    return [u for u in page.asked if f"/api/{call}?" in u and f"l_{number:04d}.cbf" in u]


def on_screen(page, number: int) -> None:
    title = f"long/l_{number:04d}.cbf"
    chrome.wait_until(page, lambda: page.inner_text("#title") == title, title)


def test_the_next_frame_is_fetched_ahead_and_shown_from_it(page):
    before = chrome.paints(page)
    page.evaluate("() => { location.hash = 'fn=long%2Fl_0001.cbf&frame=1'; }")
    chrome.wait_painted(page, before, "frame 1 painted")
    chrome.wait_until(page, lambda: asked(page, "counts", 2), "frame 2's counts fetched ahead")
    assert len(asked(page, "image", 2)) == 1
    assert not any(asked(page, call, n) for call in ("image", "counts") for n in (3, 4, 5))
    ready = "() => window.pyisViewer.countsReady()"
    page.asked.clear()
    before = chrome.paints(page)
    page.click("#next")
    on_screen(page, 2)
    chrome.wait_painted(page, before, "frame 2 painted")
    assert page.evaluate("() => window.pyisViewer.prefetched") == 1
    assert asked(page, "image", 2) == []  # shown from the reply fetched ahead
    chrome.wait_until(page, lambda: page.evaluate(ready), "frame 2's counts")
    assert asked(page, "counts", 2) == []  # and its counts came ahead too
    before = chrome.paints(page)
    page.locator("#contrast").fill("25")
    page.locator("#contrast").dispatch_event("change")
    chrome.wait_painted(page, before, "the new contrast painted")
    assert page.evaluate("() => window.pyisViewer.paints.at(-1).how") == "page"


def test_a_jump_does_not_use_the_frame_ahead_and_only_one_frame_is_ahead(page):
    chrome.wait_until(page, lambda: asked(page, "image", 3), "frame 3 fetched ahead")
    page.asked.clear()
    before = chrome.paints(page)
    page.fill("#jump", "5")
    page.dispatch_event("#jump", "change")
    on_screen(page, 5)
    chrome.wait_painted(page, before, "frame 5 painted")
    assert page.evaluate("() => window.pyisViewer.prefetched") == 1  # not frame 3's reply
    assert len(asked(page, "image", 5)) == 1
    numbers = {int(m.group(1)) for u in page.asked if (m := NAME.search(u))}
    assert numbers <= {3, 5}, page.asked  # 5 is the last: nothing is fetched ahead of it
    assert page.errors == []


def test_playing_fetches_frames_ahead_but_no_counts_until_it_stops(page):
    page.fill("#jump", "1")
    page.dispatch_event("#jump", "change")
    on_screen(page, 1)
    ready = "() => window.pyisViewer.countsReady()"
    chrome.wait_until(page, lambda: page.evaluate(ready), "frame 1's counts")
    page.asked.clear()
    page.fill("#rate", "5")
    page.click("#play")
    on_screen(page, FRAMES)
    chrome.wait_until(page, lambda: page.inner_text("#play") == "Play", "the end of the series")
    chrome.wait_until(page, lambda: page.evaluate(ready), "the last frame's counts")
    assert not any(asked(page, "counts", n) for n in (3, 4))  # passed while playing
    assert len(asked(page, "counts", FRAMES)) == 1  # the frame it stopped on
    assert page.errors == []
