"""A dependency a test needs is missing: under CI that is an error, elsewhere a skip.

``.ci/run`` sets ``CI`` (and CI sets it anyway), so a run of the README's test command there can
never pass by skipping what it did not install: root, node, chromium.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(why: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI is set: a missing dependency fails the run)")
    pytest.skip(why)
