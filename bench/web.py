"""The viewer in a real browser: time from an action to the new pixels painted, against the
same requests sent straight over ZeroMQ in the same run.

Five actions, each repeated ``--rounds`` times in Debian's chromium (Playwright) on a dev stack
with is-web: a new scale and colour map under the automatic levels (``look``, painted in the
page from the counts and their automatic levels), a contrast change at the whole-frame view
(painted in the page from the overview's counts once they are held: ``how`` page; before that a
request, counted in ``contrast_fallbacks``), a pan to tiles not yet loaded (a new place, one
zoom step past native, of a frame whose pyramid is held), next frame at the whole-frame view (a
file not read before, fetched ahead by the page while the previous frame was shown: the bench
clicks once it has arrived, ``next_prefetched`` counts the nexts it served) and next frame
zoomed in (``next_zoomed``: the overview fetched ahead, the visible tiles of the unread file
asked for on the click). "Painted" is the viewer's own signal: the counts mapped onto the
overview's canvas (``putImageData`` done), or the overview JPEG decoded (``img.decode()``) and
in the page; zoomed in, Leaflet's ``load`` event, fired when every visible tile has been drawn
on its canvas. The browser paints the screen at its next frame (<= 16 ms later), which is not
counted.

The baseline sends the same change straight over ZeroMQ: the API calls the page made for the
action's frame (the browser's Resource Timing entries, turned into wire requests by is-web's
own ``build_job``), plus the overview call the page did not make because it mapped the counts
itself or had fetched the frame ahead (the page's ``overviewUrl``), six at a time as a
browser's six connections send them: explicit levels nudged by 0.25 so the worker's
exact-repeat JPEG cache cannot answer, and next frames on files just as unread.
``*_fetch_ms`` is the part of the browser's time until the last
response of the action ended (the rest is decoding and drawing), ``*_sent_ms`` when the first
call left and ``*_first_byte_ms`` when the last call's first byte came; ``*_http_ms`` the same
calls over HTTP from Python (next frames on a third set of unread files), so the gateway's share
and the browser's are told apart; ``*_decode_start_ms`` / ``*_decode_ms`` when the overview's
decoding began and how long it took. Targets: contrast and next
frame <= 1.5x the baseline.

Run as root after ``bash .ci/install``: ``.venv/bin/python bench/web.py``. The machine is shared
with other work: figures are noisy, ratios are what to read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import TESTDATA, table, write_json  # noqa: E402
from bench.replay import Http, Wire, http_paths, replayed  # noqa: E402
from procmgr.__main__ import dev_user  # noqa: E402
from pyisdev.stack import Stack  # noqa: E402
from tests.support import browser as chrome  # noqa: E402

FRAMES = ("cbf/thau_3_2_0001.cbf", "cbf/thau_3_2_0002.cbf")
TARGETS = {"contrast_ratio": 1.5, "next_ratio": 1.5}
ACTIONS = ("look", "contrast", "pan", "next", "next_zoomed")
LOOKS = [(s, c) for s in ("linear", "sqrt", "log") for c in ("grey", "viridis", "inverted")][:-1]
PARTS = ("", "_zmq", "_http", "_sent", "_first_byte", "_fetch", "_decode_start", "_decode")
PARTS += ("_calls", "_page", "_prefetched")
IMAGE, COUNTS = "/api/image?", "/api/counts?"
PARTS_SHOWN = ("sent", "first_byte", "fetch", "decode_start", "decode")
PREFETCHED = "() => window.pyisViewer.prefetched"
IDLE = "() => window.pyisViewer.idle()"
COUNTS_READY = """() => {  // the first counts reply's end, in ms after the first paint
    const counts = performance.getEntriesByType('resource')
      .find((e) => e.name.includes('/api/counts?'));
    return counts.responseEnd - window.pyisViewer.paints[0].at; }"""
CALLS = """() => performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/api/') && e.startTime >= T0)
    .map((e) => ({url: e.name, start: e.startTime, first: e.responseStart, end: e.responseEnd}))"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(values), "p95": pct(values, 0.95), "n": len(values)}


def timed_action(page, script: str) -> tuple[dict, list[dict]]:
    """Run ``script`` in the page: its first complete paint after it (``at``, and ``decoded``
    when an overview was decoded for it: started, ended), in ms after the action, and the API
    calls it made (url; start, first byte and end in ms after the action)."""
    page.evaluate("() => performance.clearResourceTimings()")
    t0 = page.evaluate(f"() => {{ const t0 = performance.now(); {script}; return t0; }}")
    n = chrome.paints(page)
    chrome.wait_painted(page, n - 1 if _painted_after(page, t0) else n, "paint")
    paint = page.evaluate(f"() => window.pyisViewer.paints.find((p) => p.at > {t0})")
    decoded = paint.get("decoded") or {}
    painted = {"at": paint["at"] - t0, "how": paint.get("how")}
    if decoded.get("started", -1) > t0:
        painted["decoded"] = {k: decoded[k] - t0 for k in ("started", "ended")}
    calls = page.evaluate(CALLS.replace("T0", str(t0)))
    times = ("start", "first", "end")
    return painted, [{"url": c["url"]} | {k: c[k] - t0 for k in times} for c in calls]


def _painted_after(page, t0: float) -> bool:
    return page.evaluate(f"() => window.pyisViewer.paints.some((p) => p.at > {t0})")


def run(rounds: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="pyis-bench-web-", dir="/tmp"))
    os.chmod(work, 0o755)
    data = work / "data"
    data.mkdir()
    for i in range(2 * rounds + 1):  # a new file per next frame, cold for both sides
        for side in ("x", "y", "z"):  # x: the browser's series, y: ZeroMQ's, z: HTTP's
            shutil.copyfile(TESTDATA / FRAMES[i % 2], data / f"{side}_{i + 1:04d}.cbf")
    for f in [data, *data.iterdir()]:
        os.chmod(f, 0o755 if f.is_dir() else 0o644)
    stack = Stack(work, ["--dev", str(data)], stderr_dir=work).start()
    try:
        stack.start_web()
        pid = stack.sign_session(dev_user(), [0])
        wire = Wire(stack.endpoint, pid)
        web = Http(stack.web_url, stack.sign_session(dev_user(), [0]))
        with chrome.browser() as b:
            page = b.new_page(viewport={"width": 1400, "height": 900})
            page.goto(stack.login_url(pid))
            page.goto(f"{stack.web_url}/#fn=x_0001.cbf&frame=1")
            chrome.wait_until(page, lambda: chrome.paints(page) > 0, "first paint")
            page.evaluate("() => performance.setResourceTimingBufferSize(100000)")
            return measure(page, wire, web, pid, rounds)
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)


def measure(page, wire: Wire, web: Http, pid: str, rounds: int) -> dict:
    out: dict[str, list[float]] = {"counts_ready": []}
    for action in ACTIONS:
        for suffix in PARTS:
            out[action + suffix] = []

    def timed(action: str, script: str, rename: tuple[str, str] | None = None) -> None:
        painted, calls = timed_action(page, script)
        # the page's background work (counts, the frame ahead) done before the baseline runs
        chrome.wait_until(page, lambda: page.evaluate(IDLE), "the page idle")
        shown = page.evaluate("() => window.pyisViewer.overviewUrl()")
        fn = query_of(shown)["fn"]
        mine = [c for c in calls if query_of(c["url"]).get("fn") == fn and COUNTS not in c["url"]]
        asked = mine  # a pan asks for tiles only; the others stand for a new overview too
        if action != "pan" and not any(IMAGE in c["url"] for c in mine):
            asked = [*mine, {"url": shown}]
        t0 = time.perf_counter()
        wire.many(replayed(asked, pid, rename))
        out[f"{action}_zmq"].append((time.perf_counter() - t0) * 1000)
        paths = http_paths(asked, rename and (rename[0], "z_"))
        t0 = time.perf_counter()
        web.many(paths)
        out[f"{action}_http"].append((time.perf_counter() - t0) * 1000)
        out[action].append(painted["at"])
        out[f"{action}_page"].append(1.0 if painted["how"] == "page" else 0.0)
        if "decoded" in painted:
            decoded = painted["decoded"]
            out[f"{action}_decode"].append(decoded["ended"] - decoded["started"])
            out[f"{action}_decode_start"].append(decoded["started"])
        if mine:  # the page's own calls for the action (none when it had what it needed)
            out[f"{action}_fetch"].append(max(c["end"] for c in mine))
            out[f"{action}_sent"].append(min(c["start"] for c in mine))
            out[f"{action}_first_byte"].append(max(c["first"] for c in mine))
        out[f"{action}_calls"].append(len(mine))

    ready = "() => window.pyisViewer.countsReady()"
    chrome.wait_until(page, lambda: page.evaluate(ready), "the overview's counts")
    out["counts_ready"].append(page.evaluate(COUNTS_READY))
    for i in range(rounds):  # look: a new scale and colour map under the automatic levels
        scale, colormap = LOOKS[i % len(LOOKS)]  # past 8 the baseline repeats (a cache hit)
        timed(
            "look",
            f"document.getElementById('scale').value = '{scale}';"
            f" const m = document.getElementById('colormap'); m.value = '{colormap}';"
            " m.dispatchEvent(new Event('change'))",
        )
    n = chrome.paints(page)
    page.select_option("#scale", "linear")  # back to the default look for the rest
    page.select_option("#colormap", "inverted")
    chrome.wait_painted(page, n + 1, "the default look")
    for i in range(rounds):  # contrast: distinct levels, so no repeat cache answers
        timed(
            "contrast",
            f"const c = document.getElementById('contrast'); c.value = '{30 + 7 * i}';"
            " c.dispatchEvent(new Event('change'))",
        )
    fit = page.evaluate("() => window.pyisViewer.view().zoom")  # the whole-frame view
    native = page.evaluate("() => window.pyisViewer.view().native")
    for i in range(rounds):  # pan: a new place one step past native zoom
        x, y = 300 + (i % 4) * 600, 300 + (i // 4 % 4) * 600
        timed("pan", f"window.pyisViewer.zoomTo({x}, {y}, {native + 1})")
    ahead = "() => window.pyisViewer.aheadReady()"
    for zoom, action in ((fit, "next"), (fit + 1, "next_zoomed")):
        n = chrome.paints(page)
        page.evaluate(f"() => window.pyisViewer.zoomTo(1262, 1307, {zoom})")
        if zoom > fit:  # tiles to load; at the whole-frame view the overview is already there
            chrome.wait_painted(page, n, f"the view at zoom {zoom}")
        for _ in range(rounds):  # a file not read before, in the browser and over ZeroMQ
            chrome.wait_until(page, lambda: page.evaluate(ahead), "the frame ahead")
            used = page.evaluate(PREFETCHED)
            timed(action, "document.getElementById('next').click()", ("x_", "y_"))
            out[f"{action}_prefetched"].append(float(page.evaluate(PREFETCHED) - used))
    return out


def query_of(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def report(raw: dict[str, list[float]]) -> dict:
    result: dict = {"note": "2-core machine shared with other helpers' work: noisy"}
    rows = []
    for action in ACTIONS:
        web, zmq_ = summary(raw[action]), summary(raw[f"{action}_zmq"])
        ratio = web["p50"] / zmq_["p50"]
        result[f"{action}_ms"], result[f"{action}_zmq_ms"] = web, zmq_
        for part in ("sent", "first_byte", "fetch", "decode_start", "decode"):
            if raw[f"{action}_{part}"]:  # no overview decoded for tiles-only paints
                result[f"{action}_{part}_ms"] = summary(raw[f"{action}_{part}"])
        result[f"{action}_http_ms"] = summary(raw[f"{action}_http"])
        result[f"{action}_calls"] = statistics.median(raw[f"{action}_calls"])
        result[f"{action}_ratio"] = ratio
        result[f"{action}_painted_in_page"] = sum(raw[f"{action}_page"])
        if raw[f"{action}_prefetched"]:
            result[f"{action}_prefetched"] = sum(raw[f"{action}_prefetched"])
        part = {k: result.get(f"{action}_{k}_ms", {}).get("p50") for k in PARTS_SHOWN}
        target = TARGETS.get(f"{action}_ratio")
        rows.append(
            {
                "action": action,
                "browser p50": web["p50"],
                "browser p95": web["p95"],
                "in page": f"{result[f'{action}_painted_in_page']:.0f}/{web['n']}",
                "ahead": result.get(f"{action}_prefetched", ""),
                "sent p50": part["sent"],
                "1st byte p50": part["first_byte"],
                "fetched p50": part["fetch"],
                "decode from": part["decode_start"],
                "decode p50": part["decode"],
                "HTTP p50": result[f"{action}_http_ms"]["p50"],
                "calls": result[f"{action}_calls"],
                "ZeroMQ p50": zmq_["p50"],
                "ZeroMQ p95": zmq_["p95"],
                "ratio p50": ratio,
                "target": f"<= {target}" if target else "",
            }
        )
    print(table(rows, list(rows[0])))
    result["counts_ready_after_first_paint_ms"] = raw["counts_ready"][0]
    result["contrast_fallbacks"] = len(raw["contrast"]) - int(result["contrast_painted_in_page"])
    print(
        f"counts held {raw['counts_ready'][0]:.0f} ms after the first paint (a contrast change"
        f" before that is a request); contrast changes that were requests:"
        f" {result['contrast_fallbacks']}"
    )
    result["targets"] = TARGETS
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=12)
    args = ap.parse_args()
    if chrome.chromium_missing():
        print(chrome.chromium_missing(), file=sys.stderr)
        return 2
    result = report(run(args.rounds))
    print("written", write_json("web", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
