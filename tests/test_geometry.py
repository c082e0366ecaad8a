"""The numbers next to the picture (issue 12): meta's geometry keys on every real frame that has
them, spots per resolution bin independent of ``xsize``, and ``meta --frame``.

Resolutions are checked against the headers' own figures where a header has one (mar345's
RESOLUTION) and against an independent vector computation (rotate the pixel's position, take
the angle to the beam) written here, not the server's formula.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyis_common.errors import NotFound
from tests.conftest import _place
from tests.support.client import ask, error_code, meta_of
from worker import jobs
from worker.formats import read_meta

GEOMETRY = ("beam_x_px", "beam_y_px", "pixel_x_mm", "pixel_y_mm", "distance_mm", "wavelength_A")
RESOLUTION = ("resolution_edge_A", "resolution_corner_A")
# every real diffraction frame whose header holds beam centre, pixel size, distance, wavelength
COMPLETE = [
    "cbf/thau_3_2_0001.cbf",
    "cbf/run2_1_00148.cbf",
    "cbf/l-cyst_01_00001.cbf",
    "cbf/dlsnxs2cbf_therm_0001.cbf",
    "eiger/dectris_eiger_master.h5",
    "mar345/example.mar2300",
    "smv/TIMEPIX_SU_512-stdgoni_0001.img",
    "other/b191_1_9_1.img",
]
# headers that lack one of them (MarCCD: distance 0; Pilatus TIFF: no wavelength; ...)
PARTIAL = {
    "marccd/corkcont2_H_0089.mccd": {"beam_x_px", "pixel_x_mm", "wavelength_A"},
    "other/CeO2_Pilatus1M.tif": {"beam_x_px", "pixel_x_mm", "distance_mm"},
    "other/Cr8F8140k103.0026": {"beam_x_px", "distance_mm", "wavelength_A"},
    "other/i01f0001.kcd": {"pixel_x_mm", "distance_mm", "wavelength_A"},
    "other/F2K_Seb_Lyso0675.edf": set(),
}
CLI = [sys.executable, "-m", "iscli"]


def d_by_vectors(meta: dict, x: float, y: float) -> float:
    """d at pixel (x, y): the pixel's lab position with the detector swung by two-theta about
    its x axis, then Bragg's law on the angle between that position and the beam (+z)."""
    t = math.radians(meta.get("two_theta_deg", 0.0))
    p = np.array(
        [
            (x - meta["beam_center_x"]) * meta["x_pixel_size"],
            (y - meta["beam_center_y"]) * meta["y_pixel_size"],
            meta["detector_distance"],
        ]
    )
    rotation = np.array([[1, 0, 0], [0, math.cos(t), math.sin(t)], [0, -math.sin(t), math.cos(t)]])
    lab = rotation @ p
    two_theta = math.acos(lab[2] / np.linalg.norm(lab))
    return meta["wavelength"] / (2 * math.sin(two_theta / 2))


def path_of(testdata: Path, name: str) -> str:
    return str(testdata / name)


@pytest.mark.parametrize("name", COMPLETE)
def test_geometry_keys_and_resolutions_on_real_frames(testdata: Path, name: str) -> None:
    meta = read_meta(path_of(testdata, name))
    assert set(GEOMETRY + RESOLUTION) <= set(meta)
    # the C server's keys are still there, in its units; ours say theirs in the name
    assert meta["beam_x_px"] == pytest.approx(meta["beam_center_x"], abs=1e-4)
    assert meta["pixel_x_mm"] == pytest.approx(meta["x_pixel_size"] * 1000, abs=1e-4)
    assert meta["distance_mm"] == pytest.approx(meta["detector_distance"] * 1000, abs=1e-4)
    assert meta["wavelength_A"] == pytest.approx(meta["wavelength"], abs=1e-4)
    w, h = meta["x_pixels_in_detector"], meta["y_pixels_in_detector"]
    bx = min(max(meta["beam_center_x"], 0), w)
    by = min(max(meta["beam_center_y"], 0), h)
    feet = [(bx, 0), (bx, h), (0, by), (w, by)]
    corners = [(0, 0), (w, 0), (0, h), (w, h)]
    edge = max(d_by_vectors(meta, x, y) for x, y in feet)
    corner = min(d_by_vectors(meta, x, y) for x, y in corners)
    assert meta["resolution_edge_A"] == pytest.approx(edge, rel=1e-3)
    assert meta["resolution_corner_A"] == pytest.approx(corner, rel=1e-3)
    assert meta["resolution_corner_A"] < meta["resolution_edge_A"]


def test_mar345_edge_resolution_is_the_one_its_header_states(testdata: Path) -> None:
    meta = read_meta(path_of(testdata, "mar345/example.mar2300"))
    assert meta["resolution_edge_A"] == pytest.approx(1.761, abs=1e-3)  # RESOLUTION 1.761


def test_two_theta_from_the_header_moves_the_resolution(testdata: Path) -> None:
    """l-cyst: Detector_2theta 30 deg. The beam centre is mid-detector, so with the swing the
    whole frame is at higher angle than the same detector at 0."""
    meta = read_meta(path_of(testdata, "cbf/l-cyst_01_00001.cbf"))
    assert meta["two_theta_deg"] == 30.0
    flat = dict(meta, two_theta_deg=0.0)
    corner_flat = min(d_by_vectors(flat, x, y) for x, y in ((0, 0), (1475, 0), (0, 1679)))
    assert meta["resolution_corner_A"] < corner_flat


def test_smv_beam_centre_in_pixels_reaches_meta(testdata: Path) -> None:
    """The Timepix SMV header writes BEAM_CENTER_X/Y 246/240 in pixels (DENZO_X_BEAM 13.53 mm
    = 246 x 0.055): as mm it would be 4,472 px, off the 512 px detector."""
    meta = read_meta(path_of(testdata, "smv/TIMEPIX_SU_512-stdgoni_0001.img"))
    assert (meta["beam_center_x"], meta["beam_center_y"]) == (246.0, 240.0)
    assert (meta["beam_x_px"], meta["beam_y_px"]) == (246.0, 240.0)


@pytest.mark.parametrize("name", sorted(PARTIAL))
def test_no_resolution_without_a_full_geometry(testdata: Path, name: str) -> None:
    meta = read_meta(path_of(testdata, name))
    assert PARTIAL[name] <= set(meta)
    assert not set(RESOLUTION) & set(meta)  # never a guess


# ---------------------------------------------------------------------------- spots


@pytest.mark.parametrize("name", ["cbf/thau_3_2_0001.cbf", "smv/TIMEPIX_SU_512-stdgoni_0001.img"])
def test_spot_count_does_not_depend_on_xsize(testdata: Path, name: str) -> None:
    """The C server's count went 82 / 192 / 875 at 128 / 384 / 1024 px for one frame."""
    pipeline = jobs.Pipeline(home=str(testdata), cache_bytes=1 << 27)
    metas = [
        pipeline.run({"type": "spots", "fn": name, "xsize": xsize}).meta
        for xsize in (128, 384, 1024)
    ]
    assert all(type(m["spots"]) is int for m in metas)
    assert len({m["spots"] for m in metas}) == 1 and metas[0]["spots"] > 0
    assert metas[0]["spots_per_bin"] == metas[2]["spots_per_bin"]
    assert sum(metas[0]["spots_per_bin"]) == metas[0]["spots"]


def test_spots_bins_report_their_d_ranges(testdata: Path) -> None:
    name = "cbf/thau_3_2_0001.cbf"
    pipeline = jobs.Pipeline(home=str(testdata), cache_bytes=1 << 27)
    meta = pipeline.run({"type": "spots", "fn": name}).meta
    ranges = meta["spots_bin_d_A"]
    assert len(ranges) == 16 and ranges[0][1] > ranges[15][0]
    for big, small in ranges[1:]:
        assert big > small > 0
    # the outermost bin reaches the corner's resolution, sampled at reduced pixel centres
    assert ranges[15][1] == pytest.approx(meta["resolution_corner_A"], rel=0.01)
    no_geometry = pipeline.run({"type": "spots", "fn": "other/F2K_Seb_Lyso0675.edf"}).meta
    assert no_geometry["spots_bin_d_A"] == [None] * 16


# ---------------------------------------------------------------------------- the real stack


@pytest.fixture(scope="module")
def placed(site, testdata: Path) -> dict[str, str]:
    """Multi-frame and geometry files in the ESAF home, readable by its group."""
    names = {
        "emri.dcm": "dicom/emri_small.dcm",
        "data_000002.h5": "eiger/eiger2_simread7_2datafiles_4images_bslz4_data_000002.h5",
        "lcyst.cbf": "cbf/l-cyst_01_00001.cbf",
    }
    for name, src in names.items():
        _place(testdata / src, site.home, f"numbers/{name}", f"e{site.esaf}")
    return {name: f"numbers/{name}" for name in names}


def job(site, **fields) -> dict:
    return {"pid": site.session(), "esaf": site.esaf, **fields}


def test_meta_over_the_wire_has_geometry_and_the_c_keys(site, placed) -> None:
    _, meta = meta_of(ask(site.endpoint, job(site, type="meta", fn=placed["lcyst.cbf"])))
    assert meta["wavelength"] == pytest.approx(0.6889) and meta["detector_distance"] == 0.16
    assert meta["two_theta_deg"] == 30.0 and meta["distance_mm"] == 160.0
    assert meta["resolution_edge_A"] > meta["resolution_corner_A"] > 0


def test_meta_frame_is_honoured_and_out_of_range_is_not_found(site, placed) -> None:
    emri, data = placed["emri.dcm"], placed["data_000002.h5"]
    _, fifth = meta_of(ask(site.endpoint, job(site, type="meta", fn=emri, frame=5)))
    assert fifth["frame"] == 5 and fifth["last_frame"] == 10
    for fn, frame in ((emri, 11), (placed["lcyst.cbf"], 2), (data, 1), (data, 5)):
        reply = ask(site.endpoint, job(site, type="meta", fn=fn, frame=frame))
        assert error_code(reply) == "not_found", (fn, frame)
    _, third = meta_of(ask(site.endpoint, job(site, type="meta", fn=data, frame=3)))
    assert (third["first_frame"], third["frame"], third["last_frame"]) == (3, 3, 4)
    _, first = meta_of(ask(site.endpoint, job(site, type="meta", fn=data)))  # no frame: first
    assert first["frame"] == 3


def test_is_cli_meta_frame_exit_codes(site, placed, tmp_path: Path) -> None:
    on = ["--endpoint", site.endpoint, "--pid", site.session(), "--esaf", str(site.esaf)]
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*CLI, *args, *on], capture_output=True, env=env, timeout=60)

    assert run("meta", placed["emri.dcm"], "--frame", "7").returncode == 0
    missing = run("meta", placed["emri.dcm"], "--frame", "12")
    assert missing.returncode == 13 and missing.stderr.startswith(b"is-cli: not_found: ")


def test_spots_over_the_wire_c_shape_and_forced_view(site, placed) -> None:
    """meta.spots is one integer (the C server's); the job echoes the forced full view."""
    fields = dict(type="spots", fn="thau_0001.cbf", zoom=2, segcol=1, segrow=0.5, xsize=128)
    echoed, meta = meta_of(ask(site.endpoint, job(site, **fields)))
    assert (echoed["zoom"], echoed["segcol"], echoed["segrow"]) == (1.0, 0.0, 0.0)
    assert type(meta["spots"]) is int and sum(meta["spots_per_bin"]) == meta["spots"]
    other = job(site, type="spots", fn="thau_0001.cbf", xsize=1000)
    assert meta_of(ask(site.endpoint, other))[1]["spots"] == meta["spots"]


def test_read_meta_frame_checks_single_frame_files(testdata: Path) -> None:
    assert read_meta(path_of(testdata, "cbf/thau_3_2_0001.cbf"), 1)["frame"] == 1
    for name in ("cbf/thau_3_2_0001.cbf", "marccd/somedata_0001.mccd", "other/i01f0001.kcd"):
        with pytest.raises(NotFound, match="no frame 2"):
            read_meta(path_of(testdata, name), 2)


def test_edf_with_saxs_keywords_has_a_geometry(testdata: Path, tmp_path: Path) -> None:
    """ESRF's SAXS keywords (metres, pixels), as pyFAI and the ESRF SAXS tools write them."""
    import fabio.edfimage

    data = fabio.open(str(testdata / "other/F2K_Seb_Lyso0675.edf")).data
    header = {"Center_1": "1024.5", "Center_2": "1000.0", "PSize_1": "4.6e-05",
              "PSize_2": "4.6e-05", "SampleDistance": "0.2", "WaveLength": "9.5e-11"}  # fmt: skip
    fabio.edfimage.EdfImage(data=data, header=header).write(str(tmp_path / "saxs.edf"))
    meta = read_meta(str(tmp_path / "saxs.edf"))
    assert (meta["beam_x_px"], meta["pixel_x_mm"], meta["distance_mm"]) == (1024.5, 0.046, 200.0)
    assert meta["wavelength_A"] == pytest.approx(0.95)
    edge = d_by_vectors(meta, 1024.5, 0.0)  # the top edge, 1000 px away, is the nearest
    assert meta["resolution_edge_A"] == pytest.approx(edge, rel=1e-3)


@pytest.mark.parametrize("name", ["cbf/thau_3_2_0001.cbf", "cbf/l-cyst_01_00001.cbf"])
def test_bin_d_ranges_match_every_pixel_of_the_bin(testdata: Path, name: str) -> None:
    """The server finds each bin's range on the bin's border; here every reduced pixel centre
    of the bin is computed (l-cyst: swung by 30 degrees, the direct beam on the detector)."""
    pipeline = jobs.Pipeline(home=str(testdata), cache_bytes=1 << 27)
    result = pipeline.run({"type": "spots", "fn": name})
    meta, w, h = result.meta, result.job["xsize"], result.job["ysize"]
    cx, cy = meta["spots_beam_x"], meta["spots_beam_y"]
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    r2 = (xx - cx) ** 2 + (yy - cy) ** 2
    bins = np.minimum(((r2 - r2.min()) / (r2.max() - r2.min()) * 16).astype(int), 15)
    sx, sy = meta["x_pixels_in_detector"] / w, meta["y_pixels_in_detector"] / h
    t = math.radians(meta.get("two_theta_deg", 0.0))
    px = (xx * sx - meta["beam_center_x"]) * meta["x_pixel_size"]
    py = (yy * sy - meta["beam_center_y"]) * meta["y_pixel_size"]
    z = meta["detector_distance"] * math.cos(t) - py * math.sin(t)
    angle = np.arccos(z / np.sqrt(px**2 + py**2 + meta["detector_distance"] ** 2))
    d = meta["wavelength"] / (2 * np.sin(angle / 2))
    for b, (big, small) in enumerate(meta["spots_bin_d_A"]):
        inside = d[bins == b]
        # the bin's region holds its pixel centres: its range is a little wider, by less
        # than a reduced pixel (compared in 1/d, which is smooth at the beam too)
        assert small <= inside.min() * 1.001 and 1 / small - 1 / inside.min() < 0.01, b
        assert big is None or (big >= inside.max() * 0.999 and 1 / inside.max() - 1 / big < 0.01)
