"""Take the README's screenshot of the viewer (docs/viewer.png) in Debian's chromium.

A dev stack on the test data, the CBF series opened from the browser panel, the contrast set to
40 with the slider (painted in the page from the overview's counts), the cursor near (1500, 1100).
Run as root after ``bash .ci/install``: ``.venv/bin/python docs/viewer_shot.py [OUT.png]``.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import TESTDATA  # noqa: E402
from procmgr.__main__ import dev_user  # noqa: E402
from pyisdev.stack import Stack  # noqa: E402
from tests.support import browser as chrome  # noqa: E402

OUT = Path(__file__).resolve().parent / "viewer.png"


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    work = Path(tempfile.mkdtemp(prefix="pyis-shot-", dir="/tmp"))
    os.chmod(work, 0o755)
    stack = Stack(work, ["--dev", str(TESTDATA)], stderr_dir=work).start()
    png = b""
    try:
        stack.start_web()
        pid = stack.sign_session(dev_user(), [0])
        with chrome.browser() as b:
            page = b.new_page(viewport={"width": 1280, "height": 800})
            page.goto(stack.login_url(pid))
            page.locator("#entries button", has_text="cbf").first.click()
            before = chrome.paints(page)
            page.locator("#entries button", has_text="thau_3_2_####.cbf").first.click()
            chrome.wait_painted(page, before, "the frame")
            ready = "() => window.pyisViewer.countsReady()"
            chrome.wait_until(page, lambda: page.evaluate(ready), "the counts")
            before = chrome.paints(page)
            page.locator("#contrast").fill("40")
            page.locator("#contrast").dispatch_event("change")
            chrome.wait_painted(page, before, "the new contrast")
            point = page.evaluate("() => window.pyisViewer.toPage(1500.5, 1100.5)")
            page.mouse.move(point["x"], point["y"])
            box = page.locator("#cursor-value")
            chrome.wait_until(page, lambda: box.get_attribute("data-x"), "the readout")
            png = page.screenshot()
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    # 256 colours: the picture is greys and a few blues; a third of the bytes of a full PNG
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256).save(out, optimize=True)
    print("written", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
