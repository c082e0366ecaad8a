"""The viewer in a real headless browser (Debian's chromium via Playwright) on the real stack.

One walk through the viewer, as a user would: log in through the dev link, browse to a CBF
series, an Eiger file and a MarCCD file, and check what the page shows against what fabio
reads and what the server sends. A screenshot of each step goes to the test's tmp folder.
"""

from __future__ import annotations

import io
import math
import urllib.parse
from pathlib import Path

import fabio
import numpy as np
import pytest
from PIL import Image

from tests.support import browser as chrome
from tests.support.client import ask, meta_of
from tests.support.website import HOSTILE, SECRET, web_site


@pytest.fixture(scope="module")
def site(testdata: Path):
    chrome.require_chromium()
    with web_site(testdata) as s:
        yield s


@pytest.fixture(scope="module")
def viewer(site, tmp_path_factory):
    """A logged-in page; console errors and dialogs are recorded for the last test."""
    shots = tmp_path_factory.mktemp("screens")
    with chrome.browser() as b:
        page = chrome.watched_page(b)
        page.dialogs, page.shots = [], shots
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
        chrome.log_in(page, site)
        yield page
        page.close()


def shot(page, name: str) -> np.ndarray:
    """Screenshot of the image area (saved under the tmp folder) as a grey array."""
    png = page.locator("#map").screenshot(path=str(page.shots / f"{name}.png"))
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)


def open_entry(page, folder: str, label: str) -> None:
    before = chrome.paints(page)
    page.locator("#crumbs button", has_text="home").click()
    page.locator("#entries button", has_text=folder).first.click()
    page.locator("#entries button", has_text=label).first.click()
    chrome.wait_painted(page, before, f"{folder}/{label} painted")


def assert_not_blank(picture: np.ndarray) -> None:
    assert picture.std() > 3 and picture.min() < 120, "the image area is blank"


def test_cbf_shows_and_contrast_changes_the_picture(viewer):
    open_entry(viewer, "series", "thau_####.cbf")
    first = shot(viewer, "01-cbf")
    assert_not_blank(first)
    assert viewer.inner_text("#title") == "series/thau_0001.cbf"
    assert "fn=series%2Fthau_0001.cbf" in viewer.url and "pyis_session" not in viewer.url
    before = chrome.paints(viewer)
    viewer.locator("#contrast").fill("15")
    viewer.locator("#contrast").dispatch_event("change")
    chrome.wait_painted(viewer, before, "the new contrast painted")
    darker = shot(viewer, "02-contrast")
    assert darker.mean() < first.mean() - 1, "the contrast slider did not change the picture"
    assert "contrast=15" in viewer.url


def test_header_and_timings_are_shown(viewer):
    header = viewer.inner_text("#header")
    assert "detector_distance" in header and "0.351" in header
    assert viewer.inner_text("#timings")  # timings_ms when the server sends it, else a note


def api_calls(page) -> list[str]:
    """The API URLs the page fetched since the last ``performance.clearResourceTimings()``."""
    return page.evaluate(
        "() => performance.getEntriesByType('resource').map((e) => e.name)"
        ".filter((n) => n.includes('/api/'))"
    )


def test_a_contrast_change_at_the_whole_frame_view_is_painted_in_the_page(viewer):
    """At the zoom that fits the frame the overview is the picture. Its counts (the same
    reduction: 2463 x 2527 px halved until it fits) arrive once after its JPEG; a new contrast
    is then painted by the page, with no request (tests/test_browser_counts.py: its pixels are
    the server's)."""
    box = viewer.evaluate("() => [document.getElementById('map').clientWidth,"
                          " document.getElementById('map').clientHeight]")  # fmt: skip
    level = max(0, math.ceil(math.log2(max(2463 / box[0], 2527 / box[1]))))
    size = (math.ceil(2463 / 2**level), math.ceil(2527 / 2**level))
    ready = "() => window.pyisViewer.countsReady()"
    chrome.wait_until(viewer, lambda: viewer.evaluate(ready), "the overview's counts")
    counts = [c for c in api_calls(viewer) if "/api/counts?" in c and "thau_0001" in c]
    assert len(counts) == 1, counts
    query = dict(urllib.parse.parse_qsl(counts[0].split("?", 1)[1]))
    assert (int(query["xsize"]), int(query["ysize"])) == size and "contrast" not in query
    viewer.evaluate("() => performance.clearResourceTimings()")
    before = chrome.paints(viewer)
    viewer.locator("#contrast").fill("20")
    viewer.locator("#contrast").dispatch_event("change")
    chrome.wait_painted(viewer, before, "the new contrast painted")
    assert viewer.evaluate("() => window.pyisViewer.paints.at(-1).how") == "page"
    assert [c for c in api_calls(viewer) if "thau_0001" in c] == []
    assert "contrast=20" in viewer.url


def test_scale_and_colour_map_change_the_picture(viewer):
    """With the levels set (above) each look is painted in the page from the counts."""
    inverted = shot(viewer, "02b-inverted")

    def choose(select: str, value: str, name: str) -> np.ndarray:
        before = chrome.paints(viewer)
        viewer.evaluate("() => performance.clearResourceTimings()")
        viewer.locator(select).select_option(value)
        chrome.wait_painted(viewer, before, f"{select} {value} painted")
        assert viewer.evaluate("() => window.pyisViewer.paints.at(-1).how") == "page"
        assert [c for c in api_calls(viewer) if "thau_0001" in c] == []
        return shot(viewer, name)

    centre = (slice(300, 600), slice(270, 570))  # inside the frame, whatever the margins
    grey = choose("#colormap", "grey", "02c-grey")
    flipped = np.abs(grey[centre] + inverted[centre] - 255)  # the same levels, the other way
    assert np.median(flipped) < 8 and np.abs(grey - inverted)[centre].mean() > 20
    assert "colormap=grey" in viewer.url
    logged = choose("#scale", "log", "02d-grey-log")
    assert logged[centre].mean() > grey[centre].mean() + 5  # log lifts the faint background
    choose("#scale", "linear", "02e-grey-linear")
    back = choose("#colormap", "inverted", "02f-inverted")
    assert np.abs(back - inverted).mean() < 1.0
    assert "colormap" not in viewer.url and "scale" not in viewer.url


def test_zoomed_tiles_are_the_servers_pixels(viewer, site):
    before = chrome.paints(viewer)
    view = viewer.evaluate("() => window.pyisViewer.view()")
    viewer.evaluate(f"() => window.pyisViewer.zoomTo(1262, 1307, {view['native'] + 1})")
    chrome.wait_painted(viewer, before, "zoomed tiles")
    shot(viewer, "03-zoomed")
    tile = viewer.evaluate(
        """() => {
          const tile = [...document.querySelectorAll('canvas.leaflet-tile-loaded')]
            .find((t) => t.dataset.level === '0');
          const g = tile.getContext('2d');
          const px = g.getImageData(0, 0, tile.width, tile.height).data;
          const grey = [];
          for (let i = 0; i < px.length; i += 4) grey.push(px[i]);
          return {level: 0, col: +tile.dataset.col, row: +tile.dataset.row, grey};
        }"""
    )
    levels = viewer.evaluate(
        "() => Object.fromEntries(new URLSearchParams(location.hash.slice(1)))"
    )  # the levels the viewer shows: the automatic pair it was given, as the deep link says
    reply = ask(
        site.stack.endpoint,
        {
            "pid": site.pid,
            "type": "tile",
            "fn": "series/thau_0001.cbf",
            "level": 0,
            "col": tile["col"],
            "row": tile["row"],
            "contrast": float(levels["contrast"]),
            "wval": float(levels["wval"]),
        },
    )
    server = np.asarray(Image.open(io.BytesIO(reply[3])).convert("L"), dtype=int)
    shown = np.array(tile["grey"], dtype=int).reshape(server.shape)
    assert np.abs(shown - server).max() <= 2  # two JPEG decoders, the same pixels
    assert server.std() > 1  # a tile with content, not a blank one


def expected_radius(meta: dict, d: float) -> float:
    two_theta = 2 * math.asin(meta["wavelength"] / (2 * d))
    return meta["detector_distance"] * math.tan(two_theta) / meta["x_pixel_size"]


def test_ring_for_2_angstrom_has_the_geometrys_radius(viewer, site):
    viewer.locator("#rings").fill("2.0")
    viewer.locator("#rings").dispatch_event("change")
    _, meta = meta_of(
        ask(site.stack.endpoint, {"pid": site.pid, "type": "meta", "fn": "series/thau_0001.cbf"})
    )
    radius = expected_radius(meta, 2.0)
    listed = float(viewer.get_attribute("#ring-list li[data-d='2']", "data-radius-px"))
    assert listed == pytest.approx(radius, rel=1e-9)
    view = viewer.evaluate("() => window.pyisViewer.view()")
    drawn = viewer.evaluate("() => document.querySelector('path.ring').getBBox().width / 2")
    assert drawn == pytest.approx(radius * 2 ** (view["zoom"] - view["native"]), abs=1.5)
    shot(viewer, "04-ring")


def test_cursor_readout_is_the_raw_value(viewer, site):
    data = fabio.open(str(site.data / "series/thau_0001.cbf")).data
    y, x = np.unravel_index(np.argmax(data), data.shape)
    viewer.evaluate(
        f"() => window.pyisViewer.zoomTo({x}, {y}, window.pyisViewer.view().native + 2)"
    )
    point = viewer.evaluate(f"() => window.pyisViewer.toPage({x + 0.5}, {y + 0.5})")
    viewer.mouse.move(point["x"], point["y"])
    box = viewer.locator("#cursor-value")
    chrome.wait_until(viewer, lambda: box.get_attribute("data-x") == str(x), "the readout")
    assert box.get_attribute("data-y") == str(y)
    assert box.inner_text() == str(data[y, x])
    assert viewer.inner_text("#cursor-xy") == f"{x}, {y}"
    assert viewer.inner_text("#cursor-res").endswith("Å")
    shot(viewer, "05-cursor")


def test_next_frame_changes_the_image(viewer):
    viewer.evaluate(
        "() => window.pyisViewer.zoomTo(1262, 1307, window.pyisViewer.view().native - 2)"
    )
    before_picture = shot(viewer, "06-frame1")
    before = chrome.paints(viewer)
    viewer.click("#next")
    chrome.wait_until(
        viewer, lambda: viewer.inner_text("#title") == "series/thau_0002.cbf", "frame 2"
    )
    chrome.wait_painted(viewer, before, "frame 2 painted")
    after = shot(viewer, "07-frame2")
    assert np.abs(after - before_picture).mean() > 0.5, "next frame shows the same picture"
    assert "fn=series%2Fthau_0002.cbf" in viewer.url


def test_eiger_frame_and_its_next_frame(viewer):
    open_entry(viewer, "eiger", "eiger2_data_000001.h5")
    first = shot(viewer, "08-eiger")
    assert_not_blank(first)
    before = chrome.paints(viewer)
    viewer.click("#next")
    chrome.wait_until(viewer, lambda: "frame=2" in viewer.url, "Eiger frame 2")
    chrome.wait_painted(viewer, before, "Eiger frame 2 painted")
    shot(viewer, "09-eiger-frame2")


def test_marccd_shows(viewer):
    open_entry(viewer, "marccd", "somedata_0001.mccd")
    assert_not_blank(shot(viewer, "10-marccd"))
    assert viewer.inner_text("#title") == "marccd/somedata_0001.mccd"


def test_an_unreadable_file_shows_the_refusal(viewer):
    viewer.locator("#crumbs button", has_text="home").click()
    viewer.locator("#entries button", has_text="odd").first.click()
    viewer.locator("#entries button", has_text=SECRET).click()
    message = viewer.locator("#message")
    message.wait_for(state="visible")
    assert message.inner_text() == f"forbidden: permission denied: odd/{SECRET}"
    viewer.screenshot(path=str(viewer.shots / "11-refused.png"))


def test_a_hostile_file_name_is_text(viewer):
    entry = viewer.locator("#entries button", has_text="onerror")
    assert entry.inner_text() == HOSTILE
    assert viewer.locator("#entries img").count() == 0
    before = chrome.paints(viewer)
    entry.click()
    chrome.wait_painted(viewer, before, "the hostile-named file painted")
    assert viewer.inner_text("#title") == f"odd/{HOSTILE}"
    assert viewer.locator("header img, #entries img").count() == 0
    viewer.screenshot(path=str(viewer.shots / "12-hostile-name.png"))
    assert viewer.dialogs == []


SLOW_HOME_LISTING = """() => {
  window.__fetch = window.fetch;
  window.fetch = async (url, options) => {
    const home = String(url).startsWith("/api/list?") && !String(url).includes("fn=");
    if (home) await new Promise((done) => setTimeout(done, 500));
    return window.__fetch(url, options);
  };
}"""


def test_a_folder_opened_while_home_still_lists_stays_open(viewer):
    """Listings run concurrently and may come back in any order: "home" (its reply held back
    here), then a folder clicked at once, ends on the folder; the late home reply is dropped.
    Before, it replaced the folder (the 8 test_browser failures of one clean-clone CI run)."""
    viewer.locator("#crumbs button", has_text="home").click()
    viewer.locator("#entries button", has_text="series").first.wait_for()
    dropped = viewer.evaluate("() => window.pyisViewer.listingsDropped")
    viewer.evaluate(SLOW_HOME_LISTING)
    try:
        viewer.locator("#crumbs button", has_text="home").click()  # answered 0.5 s late
        viewer.locator("#entries button", has_text="series").first.click()
        count = "() => window.pyisViewer.listingsDropped"
        chrome.wait_until(viewer, lambda: viewer.evaluate(count) > dropped, "the late home reply")
    finally:
        viewer.evaluate("() => { window.fetch = window.__fetch; }")
    assert viewer.locator("#entries button", has_text="thau_####.cbf").count() == 1
    assert "series" in viewer.inner_text("#crumbs")


def test_no_console_error(viewer):
    # the one refusal above is a 403 the browser reports as a failed load; nothing else
    expected = [e for e in viewer.errors if "status of 403" in e]
    assert len(expected) == 1, viewer.errors
    assert [e for e in viewer.errors if e not in expected] == []
