"""The spots job: bright pixels counted per resolution ring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worker import jobs, spots
from worker.formats import Frame
from worker.reduce import reduce_max

# ---------------------------------------------------------------------------- spots


def ring_image(beam: tuple[float, float]) -> tuple[Frame, list[int]]:
    """A flat background of 10 counts, bright pixels (1000) at radii chosen by bin, and a masked
    bright pixel; the expected counts from r**2 computed here, bin by bin."""
    height, width = 120, 160
    data = np.full((height, width), 10, np.int32)
    yy, xx = np.mgrid[0:height, 0:width]
    r2 = (yy + 0.5 - beam[1]) ** 2 + (xx + 0.5 - beam[0]) ** 2
    low, high = r2.min(), r2.max()
    bins = np.minimum(((r2 - low) / (high - low) * 16).astype(int), 15)
    expected = [0] * 16
    for b, n in ((0, 1), (3, 2), (7, 3), (12, 4), (15, 1)):
        ys, xs = np.nonzero(bins == b)
        data[ys[:: len(ys) // n][:n], xs[:: len(ys) // n][:n]] = 1000
        expected[b] = n
    ys, xs = np.nonzero(bins == 5)
    mask = np.zeros(data.shape, bool)
    data[ys[0], xs[0]], mask[ys[0], xs[0]] = 1000, True  # bright but masked: never a spot
    return Frame(data, mask, None, {"beam_center_x": beam[0], "beam_center_y": beam[1]}), expected


@pytest.mark.parametrize("beam", [(80.0, 60.0), (-300.0, 500.0), (17.25, 100.5)])
def test_spots_counts_bright_pixels_per_ring(beam: tuple[float, float]) -> None:
    frame, expected = ring_image(beam)
    reduced = reduce_max(frame, 160)  # one source pixel per output pixel
    with np.errstate(all="raise"):
        job, meta = spots.reply(reduced, frame.meta)
    assert meta["spots_per_bin"] == expected and meta["spots"] == sum(expected)
    assert (meta["spots_beam_x"], meta["spots_beam_y"]) == beam and not meta["spots_beam_guessed"]
    assert job == {"xsize": 160, "ysize": 120, "segcol": 0.0, "segrow": 0.0, "zoom": 1.0}


@pytest.mark.parametrize("shape", [(1, 1), (40, 1), (1, 40)])
def test_spots_on_one_pixel_images_do_not_divide_by_zero(shape: tuple[int, int]) -> None:
    """No beam centre: the image centre. The bright pixel beside it is in bin 0 with nine
    dark ones (a lone pixel is its own mean, never a spot)."""
    data = np.zeros(shape, np.uint16)
    data[shape[0] // 2, shape[1] // 2] = 1000
    reduced = reduce_max(Frame(data, None, None, {}), shape[1])
    with np.errstate(all="raise"):
        _, meta = spots.reply(reduced, {})
    assert meta["spots_beam_guessed"]
    assert meta["spots_per_bin"] == [0 if shape == (1, 1) else 1] + [0] * 15


def test_spots_job_on_a_real_cbf(testdata: Path) -> None:
    pipeline = jobs.Pipeline(home=str(testdata), cache_bytes=1 << 26)
    result = pipeline.run({"type": "spots", "fn": "cbf/thau_3_2_0001.cbf", "zoom": 4})
    assert result.payloads == []
    assert result.job == {"xsize": 512, "ysize": 525, "segcol": 0.0, "segrow": 0.0, "zoom": 1.0}
    meta = result.meta
    assert len(meta["spots_per_bin"]) == 16 and sum(meta["spots_per_bin"]) == meta["spots"]
    assert 50 < meta["spots"] < 0.05 * 512 * 525  # spots, not noise everywhere
    assert meta["spots_beam_x"] == pytest.approx(1261.61 * 512 / 2463)
    assert meta["wavelength"] == pytest.approx(0.96859)


# ---------------------------------------------------------------------------- warm-up
