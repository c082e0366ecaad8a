"""What a piece of code imports late: the zygote imports everything before it forks, and an
import that first happens after the privilege drop may fail (the user cannot read the venv)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def assert_imports_nothing_new(setup: str, work: str, timeout_s: float) -> None:
    """Run ``setup``, then ``work``, in a fresh interpreter from the repository root: ``work``
    must import no module that ``setup`` had not."""
    code = f"{setup}\nimport sys\nloaded = set(sys.modules)\n{work}\n"
    code += "print(sorted(set(sys.modules) - loaded))\n"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout_s
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
