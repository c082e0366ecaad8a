"""Contrast in the page: with the overview's counts held (the ``counts`` job), a new contrast,
white level, scale or colour map is painted by the page itself, with no request, and its pixels
are the worker's own 8-bit map of the same ``jpeg`` request, pixel for pixel (every map is
float32 arithmetic in numpy's order plus a table lookup, both exact in JavaScript), in Debian's
chromium (Playwright) on the real stack. Covered: int32 counts (Pilatus CBFs above 65535, with
their module gaps masked, one with a saturated pixel), float data, one-byte counts, two-byte
counts with saturated (red) and masked pixels; the C formula of linear/inverted and the tables
of the other looks."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from tests.support import browser as chrome
from tests.support.countsite import (
    FLOATS,
    GAP,
    SHAPE,
    SYNTHETIC,
    server_rgb,
    write_synthetic,
)
from tests.support.webget import get
from tests.support.website import SECRET, web_site

CASES = [  # contrast (black), wval (white), scale, colour map
    (40, 0, "linear", "inverted"),
    (200, 10, "sqrt", "grey"),
    (900, 5, "log", "viridis"),
    (7, 3, "linear", "viridis"),
    (33.5, 2.25, "log", "inverted"),
]
FILES = [  # and what each covers
    ("series/thau_0001.cbf", "i4"),  # int32 above 65535; module gaps masked
    ("series/thau_0002.cbf", "i4"),  # one saturated pixel (red)
    (FLOATS, "f4"),  # float data
    ("odd/l-cyst_0001.cbf", "u1"),
    (SYNTHETIC, "u2"),  # saturated pixels (red) and a masked strip
]


@pytest.fixture(scope="module")
def site(testdata: Path):
    chrome.require_chromium()
    with web_site(testdata) as s:
        write_synthetic(s.data)
        cyst = s.data / "odd" / "l-cyst_0001.cbf"  # counts up to 252: one byte each
        cyst.write_bytes((testdata / "cbf/l-cyst_01_00001.cbf").read_bytes())
        cyst.chmod(0o644)
        yield s


@pytest.fixture(scope="module")
def page(site, tmp_path_factory):
    shots = tmp_path_factory.mktemp("screens")
    with chrome.browser() as b:
        page = chrome.watched_page(b)
        page.shots = shots
        chrome.log_in(page, site)
        yield page


def show(page, fn: str) -> None:
    before = chrome.paints(page)
    page.evaluate(f"() => {{ location.hash = 'fn=' + encodeURIComponent({fn!r}) + '&frame=1'; }}")
    chrome.wait_painted(page, before, f"{fn} painted")
    chrome.wait_until(
        page, lambda: page.evaluate("() => window.pyisViewer.countsReady()"), "counts"
    )


def change(page, contrast: float, wval: float, scale: str, colormap: str) -> dict:
    """Set the levels and the look as the controls do; the paint that followed."""
    before = chrome.paints(page)
    page.evaluate("() => performance.clearResourceTimings()")
    page.evaluate(
        f"""() => {{
          const c = document.getElementById('contrast'), w = document.getElementById('white');
          c.max = w.max = '1000000'; c.step = w.step = 'any';
          c.value = '{contrast}'; w.value = '{wval}';
          c.dispatchEvent(new Event('change'));
          document.getElementById('scale').value = '{scale}';
          document.getElementById('colormap').value = '{colormap}';
          document.getElementById('colormap').dispatchEvent(new Event('change'));
        }}"""
    )
    chrome.wait_painted(page, before + 1, "the new look painted")
    return page.evaluate("() => window.pyisViewer.paints.at(-1)")


def canvas_rgb(page) -> np.ndarray:
    got = page.evaluate("() => window.pyisViewer.overviewPixels()")
    assert got is not None, "the overview is not painted in the page"
    rgba = np.frombuffer(base64.b64decode(got["rgba"]), np.uint8)
    rgba = rgba.reshape(got["height"], got["width"], 4)
    assert (rgba[:, :, 3] == 255).all()
    return rgba[:, :, :3]


def api_calls(page, fn: str | None = None) -> list[str]:
    """The image and counts calls since the last clear (of ``fn``: not the frame ahead)."""
    calls = page.evaluate(
        "() => performance.getEntriesByType('resource').map((e) => e.name)"
        ".filter((n) => n.includes('/api/image') || n.includes('/api/counts'))"
    )
    return [c for c in calls if fn is None or f"fn={urllib.parse.quote(fn, safe='')}&" in c]


@pytest.mark.parametrize(("fn", "dtype"), FILES)
def test_the_page_maps_counts_as_the_server_does(page, site, fn, dtype):
    show(page, fn)
    for i, (contrast, wval, scale, colormap) in enumerate(CASES):
        paint = change(page, contrast, wval, scale, colormap)
        assert paint["how"] == "page" and api_calls(page, fn) == []  # no request for it
        shown = canvas_rgb(page)
        fields = {"contrast": contrast, "wval": wval, "scale": scale, "colormap": colormap}
        expect = server_rgb(site.data, fn, (shown.shape[1], shown.shape[0]), fields)
        differ = np.argwhere((shown != expect).any(axis=2))
        assert differ.size == 0, f"{len(differ)} pixels differ, first at {differ[:3].tolist()}"
        if i == 0:
            page.locator("#map").screenshot(path=str(page.shots / f"{dtype}-page.png"))
            size = {"xsize": shown.shape[1], "ysize": shown.shape[0]}
            query = urllib.parse.urlencode({"fn": fn, **size})
            _, headers, _ = get(site, f"/api/counts?{query}", site.pid)
            assert json.loads(headers["X-Pyis-Reply"])["meta"]["counts"]["dtype"] == dtype
    if fn == "series/thau_0002.cbf":
        assert (shown == (255, 0, 0)).all(axis=2).any()
    if dtype == "u2":  # the saturated pixels are red, the masked strip white
        assert (shown == (255, 0, 0)).all(axis=2).any()
        gap = (GAP.start + GAP.stop) // 2 * shown.shape[0] // SHAPE[0]
        assert (shown[gap] == 255).all()


AUTO_LOOKS = [("linear", "viridis"), ("sqrt", "grey"), ("log", "inverted"), ("linear", "inverted")]


@pytest.mark.parametrize("fn", ["series/thau_0002.cbf", SYNTHETIC])
def test_under_automatic_levels_a_new_look_is_painted_in_the_page(page, site, fn):
    """The first picture is the server's JPEG (Automatic); a new scale or colour map is then
    painted from the counts with the worker's per-pixel automatic levels. The page builds those
    planes with float64 sums rounded to float32 where numpy uses BLAS products, so a plane may
    differ in its last bit and a pixel by one table step (of 1024). Allowed: 1 pixel in 1000,
    by 3 levels a channel (a step of viridis's steepest channel); seen: 1 pixel of 480,000
    (log/inverted), by 1 level, the other looks identical."""
    show(page, fn)
    before = chrome.paints(page)
    page.click("#auto")
    chrome.wait_painted(page, before, "the automatic levels painted")
    assert page.evaluate("() => window.pyisViewer.overviewPixels()") is None  # a JPEG again
    ready = "() => window.pyisViewer.countsReady()"
    chrome.wait_until(page, lambda: page.evaluate(ready), "the counts")
    for scale, colormap in AUTO_LOOKS:
        before = chrome.paints(page)
        page.evaluate("() => performance.clearResourceTimings()")
        page.select_option("#scale", scale)
        page.select_option("#colormap", colormap)
        chrome.wait_painted(page, before + 1, f"{scale} {colormap} painted")
        assert page.evaluate("() => window.pyisViewer.paints.at(-1).how") == "page"
        assert api_calls(page, fn) == []
        shown = canvas_rgb(page)
        expect = server_rgb(
            site.data, fn, (shown.shape[1], shown.shape[0]), {"scale": scale, "colormap": colormap}
        )
        diff = np.abs(shown.astype(int) - expect).max(axis=2)
        assert (diff > 0).mean() <= 1e-3 and diff.max() <= 3, (int((diff > 0).sum()), diff.max())
    assert "contrast" not in page.url


def test_counts_the_session_may_not_read_are_refused_in_the_page(page):
    page.evaluate(f"() => window.pyisViewer.loadCounts('odd/{SECRET}')")
    message = page.locator("#message")
    message.wait_for(state="visible")
    assert message.inner_text() == f"forbidden: permission denied: odd/{SECRET}"
    assert [e for e in page.errors if "status of 403" not in e] == []
