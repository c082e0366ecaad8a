"""Debian's chromium driven by Playwright: the viewer's tests and bench/web.py share it.

Playwright must never download a browser of its own (no network but package registries): it
is pointed at /usr/bin/chromium, which .ci/install installs. In CI a missing browser fails
the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.support import required

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PAINT_TIMEOUT_S = 30.0  # a cold worker plus a cold Eiger read on a loaded CI machine


def chromium_missing() -> str | None:
    if os.path.exists(CHROMIUM):
        return None
    return "Debian's chromium is not installed (.ci/install installs it)"


def require_chromium() -> None:
    """Fail in CI, skip elsewhere, when the browser is missing (tests/support/required.py)."""
    missing = chromium_missing()
    if missing:
        required.missing(missing)


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # root cannot use the sandbox
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield b
        finally:
            b.close()


def watched_page(b: Any, width: int = 1400, height: int = 900) -> Any:
    """A new page whose console errors and uncaught exceptions collect in ``page.errors``
    (the tests end by asserting there were none)."""
    page = b.new_page(viewport={"width": width, "height": height})
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(f"uncaught: {e}"))
    return page


def log_in(page: Any, site: Any) -> None:
    """Through the site's one-time login link, until the directory browser lists entries."""
    page.goto(site.login_url())
    page.wait_for_selector("#entries li button")


def wait_until(
    page: Any, condition: Callable[[], Any], what: str, timeout_s: float = PAINT_TIMEOUT_S
):
    """Poll ``condition`` (which reads the page) until it is truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(20)


def paints(page: Any) -> int:
    return int(page.evaluate("() => window.pyisViewer.paints.length"))


def wait_painted(page: Any, after: int, what: str) -> None:
    """Until the viewer reports more complete paints (all visible tiles loaded) than ``after``."""
    wait_until(page, lambda: paints(page) > after, what)
