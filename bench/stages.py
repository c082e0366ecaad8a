"""Time each pipeline stage in-process, against a same-run baseline: ``np.copy`` of the frame.

Usage: python bench/stages.py [IMAGE ...] [--repeats N] [--xsize PX]

The Pilatus 6M CBF from the shared test data is always measured; more files (for example the
ones ``/work/shared/tools/make_images.py`` writes) are added from the command line. Stages run
interleaved, one round at a time, so a burst of load on a shared machine hits every stage alike;
the table gives medians and each stage's ratio to the copy of the same frame in the same run.

Then what a viewer's interaction costs the worker once it holds the frame's pyramid (issue 14),
as its own ``timings`` report it: a new xsize (600 + r px, bench/interactive.py's sizes, each a
new reduction from the nearest level), a new zoom segment (4x, 512 px, its segments) and a new
contrast (512 px, stage 2 only).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without installing pyis

# bench.common first: it pins OpenMP to one thread, as in the workers, before fabio loads
from bench.common import TESTDATA, table, write_json  # noqa: E402
from worker import jobs  # noqa: E402
from worker.cache import Key  # noqa: E402
from worker.formats import Frame, read_frame  # noqa: E402
from worker.levels import compute  # noqa: E402
from worker.reduce import reduce_max, saturation_level  # noqa: E402
from worker.render import encode_jpeg, levels, to_colours, to_pixels  # noqa: E402

DEFAULT_IMAGE = TESTDATA / "cbf" / "thau_3_2_0001.cbf"
COLUMNS = ["stage", "median ms", "min ms", "x copy"]
SIZES = 9  # new xsizes 600 .. 608: bench/interactive.py's (its 9 rounds), one level apiece
STEPS = ("reduce", "map", "encode", "in process")


def stages(path: str, frame: Frame, xsize: int, quality: int) -> dict[str, Callable[[], Any]]:
    """One closure per stage; each works on the previous stage's output made once up front."""
    reduced = reduce_max(frame, xsize)
    white, black = levels(reduced.stats, 0.0, -1.0)
    pixels = to_pixels(reduced, white, black)  # grey, or RGB when something is saturated
    target = np.empty_like(frame.data)
    stats = compute(frame, saturation_level(frame))
    whole = (slice(0, frame.data.shape[0]), slice(0, frame.data.shape[1]))

    def automatic() -> np.ndarray:
        return to_colours(reduced, *stats.planes(*whole, reduced.data.shape))

    return {
        "copy (baseline)": lambda: np.copy(frame.data),
        # the same copy into memory already mapped: no page faults, so a stricter baseline
        "copy, no allocation": lambda: np.copyto(target, frame.data),
        "read + decode": lambda: read_frame(path),
        f"reduce ({xsize} px)": lambda: reduce_max(frame, xsize),
        "map (levels + pixels)": lambda: to_pixels(reduced, *levels(reduced.stats, 0.0, -1.0)),
        "level statistics (stage 1)": lambda: compute(frame, saturation_level(frame)),
        "map, automatic levels": automatic,
        "encode simplejpeg": lambda: encode_jpeg(pixels, quality),
        "encode pillow": lambda: encode_jpeg(pixels, quality, encoder="pillow"),
    }


def measure(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[int]]:
    times: dict[str, list[int]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter_ns()
            fn()
            times[name].append(time.perf_counter_ns() - start)
    return times


def interactive(path: str, repeats: int) -> dict[str, list[int]]:
    """The worker's steps (ns) of a new xsize, zoom and contrast of a frame it has read:
    its pipeline, its pyramid, its timings; every stage 1 and JPEG of a size dropped before
    that size is asked again, the pyramid kept."""
    home, name = os.path.split(os.path.abspath(path))
    pipe = jobs.Pipeline(home=home)
    job = {"type": "jpeg", "fn": name, "xsize": 512}
    pipe.run(job)  # the cold read: the frame's pyramid held from here on
    asked = ("new xsize", "new zoom", "new contrast")
    times: dict[str, list[int]] = {f"{what}: {step}": [] for what in asked for step in STEPS}
    for r in range(repeats):
        pipe.lru.drop(lambda key: isinstance(key, Key) and (key.xsize, key.zoom) != (512, 1.0))
        pipe.jpegs.drop(lambda key: True)
        asks = {
            "new xsize": job | {"xsize": 600 + r % SIZES},
            "new zoom": job | {"zoom": 4.0, "segcol": float(r % 4), "segrow": float(r // 4 % 4)},
            "new contrast": job | {"contrast": 100 + r},
        }
        for what, ask in asks.items():
            start = time.perf_counter_ns()
            timings = pipe.run(ask).timings
            times[f"{what}: in process"].append(time.perf_counter_ns() - start)
            for step in STEPS[:-1]:
                times[f"{what}: {step}"].append(int(timings[step] * 1e6))
    del times["new contrast: reduce"]  # always 0: stage 1 of that size is held
    return times


def summarise(times: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    copy = statistics.median(times["copy (baseline)"])
    return {
        name: {
            "median_ms": statistics.median(ns) / 1e6,
            "min_ms": min(ns) / 1e6,
            "ratio_to_copy": statistics.median(ns) / copy,
        }
        for name, ns in times.items()
    }


def bench_image(path: str, repeats: int, xsize: int, quality: int) -> dict[str, Any]:
    frame = read_frame(path)
    fns = stages(path, frame, xsize, quality)
    for fn in fns.values():  # warm caches and plans once, outside the timing
        fn()
    result = summarise(measure(fns, repeats) | interactive(path, repeats))
    return {
        "path": path,
        "shape": list(frame.data.shape),
        "dtype": str(frame.data.dtype),
        "megabytes": frame.data.nbytes / 1e6,
        "stages": result,
    }


def print_table(image: dict[str, Any]) -> None:
    shape = "x".join(str(n) for n in reversed(image["shape"]))
    print(f"\n{Path(image['path']).name}  {shape} {image['dtype']}  {image['megabytes']:.1f} MB")
    rows = [
        {
            "stage": name,
            "median ms": r["median_ms"],
            "min ms": r["min_ms"],
            "x copy": r["ratio_to_copy"],
        }
        for name, r in image["stages"].items()
    ]
    print(table(rows, COLUMNS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", help="more image files to measure")
    parser.add_argument("--repeats", type=int, default=31, help="rounds per image (median)")
    parser.add_argument("--xsize", type=int, default=512, help="output width for reduce")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    args = parser.parse_args(argv)
    paths = [str(DEFAULT_IMAGE), *args.images]
    # One untimed pass first: the first large frames of a process pay for page faults until
    # malloc has raised its mmap threshold (copy 2.8 ms instead of 1.3 ms); a worker that has
    # served a few requests is past that, and that steady state is what we measure.
    bench_image(paths[0], 3, args.xsize, args.quality)
    images = [bench_image(p, args.repeats, args.xsize, args.quality) for p in paths]
    for image in images:
        print_table(image)
    report = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "xsize": args.xsize,
        "quality": args.quality,
        "images": images,
    }
    print(f"\nwrote {write_json('stages', report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
