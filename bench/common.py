"""Shared by the bench scripts: timing, tables, JSON output, and the images to use."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# the workers run with one OpenMP/BLAS thread (the zygote sets this); the floor must too, or
# fabio's OpenMP decoders spin on 2 cores and the "floor" is 3x slower than the server
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("PYIS_TESTDATA", REPO.parent / "shared" / "testdata"))
MAKE_IMAGES = TESTDATA.parent / "tools" / "make_images.py"  # shared/, next to testdata/
RESULTS = REPO / "bench" / "results"


def median_ms(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(times)


def synth_images(outdir: Path) -> Path:
    """The large detector-like images of shared/tools/make_images.py (made once, cached)."""
    if not (outdir / "pilatus6m_2463x2527.cbf").exists():
        outdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(MAKE_IMAGES), str(outdir)], check=True, stdout=subprocess.DEVNULL
        )
    return outdir


def data_dir(workdir: Path, synth: Path, real: list[str]) -> Path:
    """One directory holding the synthetic images and copies of some real ones (never in the
    repo): the dev stack serves it as the ESAF home, and symlinks out of a home are refused."""
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    for f in synth.iterdir():
        if not (data / f.name).exists():
            os.link(f, data / f.name) if f.stat().st_dev == data.stat().st_dev else shutil.copy(
                f, data / f.name
            )
    for rel in real:
        shutil.copy(TESTDATA / rel, data / Path(rel).name)
    os.chmod(workdir, 0o755)
    for f in [data, *data.iterdir()]:
        os.chmod(f, 0o755 if f.is_dir() else 0o644)
    return data


def table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(
            "  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True))
        )
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path
