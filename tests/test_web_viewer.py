"""is-web against the real stack: the viewer's job types (image, list, tile, pixels, sum)
checked against fabio and numpy."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fabio
import h5py
import numpy as np
import pytest
from PIL import Image

from tests.support.client import ask, meta_of
from tests.support.webget import api, get
from tests.support.website import HOSTILE, SECRET, web_site
from worker import render, tiles


@pytest.fixture(scope="module")
def site(testdata: Path):
    with web_site(testdata) as s:
        yield s


def test_the_image_reply_carries_levels_and_meta(site):
    status, headers, body = get(site, "/api/image?fn=series/thau_0001.cbf&xsize=256", site.pid)
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    reply = json.loads(headers["X-Pyis-Reply"])
    assert reply["job"]["xsize"] == 256 and reply["meta"]["x_pixels_in_detector"] == 2463
    assert Image.open(io.BytesIO(body)).size[0] == 256


def test_list_groups_series_and_shows_names_as_data(site):
    status, body = api(site, "list", fn="series")
    assert status == 200
    (series,) = body["meta"]["entries"]
    assert series["kind"] == "series" and series["template"] == "thau_####.cbf"
    assert (series["first"], series["last"], series["count"]) == (1, 2, 2)
    status, body = api(site, "list", fn="odd")
    names = {e["name"] for e in body["meta"]["entries"]}
    assert HOSTILE in names and SECRET in names  # listing needs the folder, not the file
    status, body = api(site, "list", fn="eiger")
    (h5,) = body["meta"]["entries"]
    assert h5["kind"] == "hdf5" and h5["frames"] == 2
    status, body = api(site, "list")
    kinds = {e["name"]: e["kind"] for e in body["meta"]["entries"]}
    assert kinds == {
        "eiger": "dir",
        "locked": "dir",
        "marccd": "dir",
        "odd": "dir",
        "series": "dir",
    }


def test_list_is_paged(site):
    _, first = api(site, "list", limit=2)
    _, rest = api(site, "list", offset=2, limit=10)
    names = [e["name"] for e in first["meta"]["entries"] + rest["meta"]["entries"]]
    assert names == ["eiger", "locked", "marccd", "odd", "series"]
    assert first["meta"]["total"] == 5


def test_list_refuses_what_the_user_may_not_read(site):
    status, body = api(site, "list", fn="locked")
    assert status == 403 and body["message"] == "permission denied: locked"
    status, body = api(site, "list", fn="..")
    assert status == 403 and body["error"] == "forbidden"
    status, body = api(site, "list", fn="series/thau_0001.cbf")
    assert status == 400 and body["message"] == "not a directory: series/thau_0001.cbf"


@pytest.mark.parametrize(
    "fn", ["series/thau_0001.cbf", "marccd/somedata_0001.mccd", "eiger/eiger2_data_000001.h5"]
)
def test_pixels_are_the_raw_values_fabio_reads(site, fn):
    data = fabio.open(str(site.data / fn)).data
    y, x = np.unravel_index(np.argmax(data), data.shape)
    status, body = api(site, "pixels", fn=fn, x=int(x), y=int(y), size=5)
    assert status == 200
    meta = body["meta"]
    window = data[meta["y0"] : meta["y0"] + 5, meta["x0"] : meta["x0"] + 5]
    got = np.array([[np.nan if v is None else v for v in row] for row in meta["values"]])
    valid = ~np.isnan(got)
    assert valid[y - meta["y0"], x - meta["x0"]]
    assert (got[valid] == window[valid]).all()
    assert got[y - meta["y0"], x - meta["x0"]] == data[y, x]


def test_pixels_window_is_bounded(site):
    status, body = api(site, "pixels", fn="series/thau_0001.cbf", x=0, y=0, size=33)
    assert status == 400 and "'size' must be between 1 and 32" in body["message"]
    status, body = api(site, "pixels", fn="series/thau_0001.cbf", x=99999, y=0)
    assert status == 400 and "outside" in body["message"]


@pytest.mark.parametrize("level,col,row", [(2, 1, 1), (3, 1, 1), (0, 5, 5)])
def test_a_tile_is_the_block_maximum_of_the_frame(site, level, col, row):
    """A tile against an independent numpy block max of the file, mapped with the same levels.
    (3, 1, 1) is partial: the frame ends inside it."""
    fn = "series/thau_0001.cbf"
    data = fabio.open(str(site.data / fn)).data
    f, span = 1 << level, tiles.TILE << level
    window = data[row * span : (row + 1) * span, col * span : (col + 1) * span]
    h, w = -(-window.shape[0] // f), -(-window.shape[1] // f)
    padded = np.full((h * f, w * f), -1, window.dtype)
    padded[: window.shape[0], : window.shape[1]] = window
    blocks = padded.reshape(h, f, w, f).max(axis=(1, 3))
    reply = ask(
        site.stack.endpoint,
        {
            "pid": site.pid,
            "type": "tile",
            "fn": fn,
            "level": level,
            "col": col,
            "row": row,
            "contrast": 50,
            "wval": 0,
        },
    )
    job, meta = meta_of(reply)
    assert (meta["level"], meta["col"], meta["row"], job["xsize"]) == (level, col, row, 256)
    full = np.full((256, 256), -1, blocks.dtype)
    full[:h, :w] = blocks  # past the frame: invalid, drawn white
    assert (h < 256) == (level == 3)  # the edge of the frame lies inside the level-3 tile
    assert not (full >= 115897).any()  # nothing saturated here: one-channel JPEG both ways
    reduced = render.Reduced(full, full >= 0, np.zeros(full.shape, bool), {})
    expect = render.encode_jpeg(render.to_pixels(reduced, 0.0, 50.0), 90)
    # the same pixels through the same encoder: the decoded tiles are identical
    assert np.array_equal(decode(reply[3]), decode(expect))
    y, x = np.unravel_index(np.argmax(full), full.shape)
    assert full[y, x] < 50 or decode(reply[3])[y, x] < 30  # the strongest spot stays dark


def decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"))


def test_a_tile_past_the_frame_is_blank(site):
    reply = ask(
        site.stack.endpoint,
        {
            "pid": site.pid,
            "type": "tile",
            "fn": "series/thau_0001.cbf",
            "level": 3,
            "col": 2,
            "row": 2,
        },
    )
    got = np.asarray(Image.open(io.BytesIO(reply[3])).convert("L"))
    assert got.min() >= 250  # invalid pixels are drawn white


def test_sum_adds_frames_at_full_depth(site):
    """A tile of frames 1+2 of the Eiger file equals the same map of h5py's frames added."""
    fn = "eiger/eiger2_data_000001.h5"
    with h5py.File(site.data / fn) as f:
        stack = f["entry/data/data"][0:2].astype(np.int64)
    total = stack.sum(axis=0)
    job = {
        "pid": site.pid,
        "type": "tile",
        "fn": fn,
        "sum": 2,
        "level": 0,
        "col": 1,
        "row": 1,
        "contrast": 12,
        "wval": 0,
    }
    reply = ask(site.stack.endpoint, job)
    full = np.full((256, 256), -1, np.int64)
    part = total[256:512, 256:512]
    full[: part.shape[0], : part.shape[1]] = part
    reduced = render.Reduced(full, full >= 0, np.zeros(full.shape, bool), {})
    expect = render.encode_jpeg(render.to_pixels(reduced, 0.0, 12.0), 90)
    assert np.array_equal(decode(reply[3]), decode(expect))
    status, body = api(site, "image", fn=fn, frame=2, sum=2)
    assert status == 404 and "has no frame 3" in body["message"]
    status, body = api(site, "image", fn=fn, sum=101)
    assert status == 400 and "'sum' must be between 1 and 100" in body["message"]
