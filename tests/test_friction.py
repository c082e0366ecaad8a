"""What a user meets (issue 12): frames still being written, Eiger series numbers, firmware 1.6
saturation, labels, refused view values, and an ``is-dev --data`` the worker cannot read.

Crafted files are made here, by the tests, from real frames or with h5py directly.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest
from PIL import Image

from pyis_common.errors import CODES, BadRequest, Incomplete, NotFound, Unsupported
from pyis_common.request import parse
from tests.conftest import _place, need_root
from tests.support.client import ask, error_code
from tests.test_formats import DATA, DETECTOR, write_series
from worker import jobs, render
from worker.formats import read_frame, read_meta

CLI = [sys.executable, "-m", "iscli"]
REPO = Path(__file__).resolve().parents[1]


def cut(src: Path, dst: Path, fraction: float) -> str:
    raw = src.read_bytes()
    dst.write_bytes(raw[: int(len(raw) * fraction)])
    return str(dst)


# ---------------------------------------------------------------------------- still being written


def test_incomplete_is_the_last_code_so_exit_codes_do_not_shift() -> None:
    assert CODES[-1] == "incomplete" and CODES.index("internal") == 7


@pytest.mark.parametrize(
    "name",
    ["cbf/thau_3_2_0001.cbf", "marccd/somedata_0001.mccd", "other/F2K_Seb_Lyso0675.edf"],
)
def test_a_frame_cut_short_is_incomplete_not_unsupported(
    testdata: Path, tmp_path: Path, name: str
) -> None:
    path = cut(testdata / name, tmp_path / Path(name).name, 0.6)
    with pytest.raises(Incomplete, match="still being written.*try again") as caught:
        read_frame(path)
    assert "Error" not in str(caught.value)  # no Python exception name
    whole = read_frame(str(testdata / name))  # and the whole file still reads
    assert whole.data.size > 0


def test_a_cbf_cut_inside_its_header_is_incomplete(testdata: Path, tmp_path: Path) -> None:
    path = tmp_path / "head.cbf"
    path.write_bytes((testdata / "cbf/thau_3_2_0001.cbf").read_bytes()[:2000])
    with pytest.raises(Incomplete):
        read_frame(str(path))
    (tmp_path / "notes.cbf").write_text("beamtime notes, not an image\n")
    with pytest.raises(Unsupported):  # not a CBF at all stays unsupported
        read_frame(str(tmp_path / "notes.cbf"))


def test_an_eiger_chunk_not_yet_written_is_incomplete(tmp_path: Path) -> None:
    """The data file exists with room for 3 images, only the first written: HDF5 would hand
    back zeros (its fill value) for the others."""
    path = tmp_path / "growing_data_000001.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(DATA, (3, 8, 8), np.uint16, chunks=(1, 8, 8), **hdf5plugin.LZ4())
        ds[0] = np.full((8, 8), 7, np.uint16)
        ds.attrs["image_nr_low"], ds.attrs["image_nr_high"] = np.uint64(1), np.uint64(3)
    assert (read_frame(str(path), 1).data == 7).all()
    with pytest.raises(Incomplete, match="frame 2 .*not written yet"):
        read_frame(str(path), 2)


def test_eiger_frames_the_master_counts_but_no_file_holds_yet_are_incomplete(
    tmp_path: Path,
) -> None:
    frames = np.arange(4 * 6 * 5, dtype=np.uint32).reshape(4, 6, 5)
    master = write_series(tmp_path, frames, 2, np.zeros((6, 5)))
    os.remove(tmp_path / "series_data_000002.h5")  # the file writer has not got there yet
    assert np.array_equal(read_frame(str(master), 2).data, frames[1])
    with pytest.raises(Incomplete, match="series_data_000002.h5.*try again"):
        read_frame(str(master), 3)
    with pytest.raises(NotFound):  # beyond what the master counts: not coming
        read_frame(str(master), 5)


@pytest.fixture(scope="module")
def cut_cbf(site, testdata: Path) -> str:
    src = testdata / "cbf/thau_3_2_0001.cbf"
    dst = _place(src, site.home, "friction/writing.cbf", f"e{site.esaf}")
    dst.write_bytes(src.read_bytes()[:3_000_000])
    return "friction/writing.cbf"


def test_incomplete_over_the_wire_and_is_cli_exit_18(site, cut_cbf: str, tmp_path: Path) -> None:
    reply = ask(
        site.endpoint, {"pid": site.session(), "esaf": site.esaf, "type": "jpeg", "fn": cut_cbf}
    )
    assert error_code(reply) == "incomplete" and b"try again" in reply[0]
    on = ["--endpoint", site.endpoint, "--pid", site.session(), "--esaf", str(site.esaf)]
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([*CLI, "jpeg", cut_cbf, "-o", str(tmp_path / "x.jpg"), *on], env=env,
                          capture_output=True, timeout=60)  # fmt: skip
    assert done.returncode == 18 and done.stderr.startswith(b"is-cli: incomplete: ")


def test_a_request_without_type_is_the_c_servers_error(site) -> None:
    reply = ask(site.endpoint, {"pid": site.session(), "esaf": site.esaf, "fn": "thau_0001.cbf"})
    assert error_code(reply) == "bad_request" and b"No type parameter in job" in reply[0]


# ---------------------------------------------------------------------------- Eiger series


def test_a_frame_number_is_the_same_image_from_the_master_or_a_data_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames = rng.poisson(30, (6, 12, 10)).astype(np.uint32)
    master = write_series(tmp_path, frames, 3, np.zeros((12, 10)))
    data_files = [tmp_path / "series_data_000001.h5", tmp_path / "series_data_000002.h5"]
    for n in range(1, 7):
        via_data = read_frame(str(data_files[(n - 1) // 3]), n)
        assert np.array_equal(via_data.data, read_frame(str(master), n).data)
        assert np.array_equal(via_data.data, frames[n - 1]) and via_data.meta["frame"] == n
    second = read_meta(str(data_files[1]))
    assert (second["first_frame"], second["last_frame"]) == (4, 6)
    with pytest.raises(NotFound, match="frames 4 to 6"):
        read_frame(str(data_files[1]), 1)


def test_eiger_firmware_1_6_saturation_is_the_count_cutoff(tmp_path: Path) -> None:
    """Firmware 1.6 masters have no saturation_value; XDS reads countrate_correction_count_cutoff.
    A pixel above it must be red in the JPEG and counted."""
    frames = np.full((2, 30, 40), 20, np.uint32)
    frames[:, 20, 20] = 5000
    master = write_series(tmp_path, frames, 2, np.zeros((30, 40)))
    with h5py.File(master, "a") as f:
        del f[DETECTOR + "/saturation_value"]
        f[DETECTOR + "/detectorSpecific/software_version"] = np.bytes_(b"1.6.0")
        f[DETECTOR + "/detectorSpecific/countrate_correction_count_cutoff"] = np.uint32(1000)
    assert read_meta(str(master))["saturation"] == 1000
    pipeline = jobs.Pipeline(home=str(tmp_path), cache_bytes=1 << 24)
    result = pipeline.run({"type": "jpeg", "fn": master.name, "xsize": 40, "contrast": 100})
    assert result.meta["nSaturated"] == 1
    rgb = np.asarray(Image.open(io.BytesIO(result.payloads[0])).convert("RGB")).astype(int)
    r, g, b = rgb[20, 20]
    assert r > 180 and g < 90 and b < 90  # red


# ---------------------------------------------------------------------------- labels and views


def test_a_label_without_a_height_gets_one_that_grows_with_the_picture(testdata: Path) -> None:
    pipeline = jobs.Pipeline(home=str(testdata), cache_bytes=1 << 26)
    heights = {}
    for xsize in (256, 512, 1024):
        job = {"type": "jpeg", "fn": "cbf/thau_3_2_0001.cbf", "xsize": xsize, "label": "thau"}
        bare = pipeline.run(job | {"label": ""}).job["ysize"]
        heights[xsize] = pipeline.run(job).job["ysize"] - bare
    assert heights == {256: 16, 512: 16, 1024: 32}
    explicit = {"type": "jpeg", "fn": "cbf/thau_3_2_0001.cbf", "label": "x", "labelHeight": 0}
    assert (
        pipeline.run(explicit).job["ysize"] == pipeline.run(explicit | {"label": ""}).job["ysize"]
    )


def test_the_label_font_grows_with_the_banner() -> None:
    def inked_rows(height: int) -> int:
        banner = render.banner("Hg", height, 200, 1)[:, :, 0]
        return int((banner < 128).any(axis=1).sum())

    small, large = inked_rows(16), inked_rows(60)
    assert large >= 3 * small  # the C server's 9x15 font stayed 15 rows high


@pytest.mark.parametrize(
    "fields,word",
    [
        ({"zoom": 0.5}, "zoom"),
        ({"zoom": 0}, "zoom"),
        ({"zoom": 2000}, "zoom"),
        ({"segcol": 0.5}, "segcol"),  # zoom 1: the one segment is 0
        ({"zoom": 2, "segcol": 1.5}, "segcol"),
        ({"zoom": 4, "segrow": -1}, "segrow"),
    ],
)
def test_bad_view_values_are_refused_not_clamped(fields: dict, word: str) -> None:
    with pytest.raises(BadRequest, match=word):
        parse({"pid": "s", "type": "jpeg", **fields})


def test_good_view_values_pass() -> None:
    job = {"pid": "s", "type": "jpeg", "fn": "a.cbf"}
    req = parse(job | {"zoom": 4, "segcol": 3, "segrow": 2.5})
    assert (req.zoom, req.segcol, req.segrow) == (4.0, 3.0, 2.5)
    assert parse(job | {"zoom": 0.96}).zoom == 1.0  # C's rounding to 0.1


# ---------------------------------------------------------------------------- is-dev


def test_is_dev_says_at_start_when_the_worker_cannot_read_the_data(tmp_path: Path) -> None:
    need_root()  # as root the worker runs as nobody
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(tmp_path, 0o755)
    done = subprocess.run(
        [sys.executable, "-m", "pyisdev", "--data", str(private)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        "'nobody'" in done.stderr and "cannot read" in done.stderr and str(private) in done.stderr
    )
    assert "stack up" not in done.stdout
