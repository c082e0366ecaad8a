"""``/api/counts`` (the ``counts`` job) against the real stack: the overview's reduction at full
depth, bit for bit the worker's own stage 1, HTTP-compressed, bounded, and refused as the image
server words it for hostile values and files the session may not read."""

from __future__ import annotations

import base64
import gzip
import json
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from pyis_common.request import parse
from tests.support.webget import get
from tests.support.website import SECRET, web_site
from worker import jobs

FN = "series/thau_0001.cbf"


@pytest.fixture(scope="module")
def site(testdata: Path):
    with web_site(testdata) as s:
        (s.data / "ct.dcm").write_bytes((testdata / "dicom/MR_small.dcm").read_bytes())
        (s.data / "ct.dcm").chmod(0o644)
        yield s


def counts(site, **params):
    """(status, reply header or refusal, payload) of /api/counts, accepting gzip."""
    url = f"{site.url}/api/counts?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url, headers={"Cookie": f"pyis_session={site.pid}"})
    req.add_header("Accept-Encoding", "gzip")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            body, headers, status = r.read(), r.headers, r.status
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), None
    if headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return status, json.loads(headers["X-Pyis-Reply"]) | {"headers": headers}, body


def decode(payload: bytes, layout: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    n = layout["width"] * layout["height"]
    shape = (layout["height"], layout["width"])
    kind = np.dtype("<" + layout["dtype"])
    values = np.frombuffer(payload, kind, n).reshape(shape)
    bits = -(-n // 8)
    rest = payload[n * kind.itemsize :]
    assert len(rest) == bits * (2 if layout["red"] else 1)
    valid = np.unpackbits(np.frombuffer(rest[:bits], np.uint8), count=n, bitorder="little")
    red = None
    if layout["red"]:
        red = np.unpackbits(np.frombuffer(rest[bits:], np.uint8), count=n, bitorder="little")
        red = red.reshape(shape).astype(bool)
    return values, valid.reshape(shape).astype(bool), red


@pytest.mark.parametrize(
    ("fn", "frame", "extra"),
    [(FN, 1, {}), ("eiger/eiger2_data_000001.h5", 2, {}), ("series/thau_0001.cbf", 1, {"sum": 1})],
)
def test_counts_are_the_workers_reduction(site, fn, frame, extra):
    status, reply, payload = counts(site, fn=fn, frame=frame, xsize=616, ysize=632, **extra)
    assert status == 200, reply
    assert reply["headers"]["Content-Type"] == "application/octet-stream"
    assert reply["headers"].get("Content-Encoding") == "gzip"  # counts are sparse
    layout = reply["meta"]["counts"]
    values, valid, red = decode(payload, layout)
    req = parse(
        {"type": "jpeg", "fn": fn, "frame": frame, "xsize": 616, "ysize": 632}, need_pid=False
    )
    reduced = jobs.Pipeline(home=str(site.data)).stage1(req)[0].reduced
    assert (layout["width"], layout["height"]) == reduced.data.shape[::-1]
    assert (reply["job"]["xsize"], reply["job"]["ysize"]) == reduced.data.shape[::-1]
    assert np.array_equal(valid, reduced.valid)
    expect = reduced.data.astype(np.float32)[reduced.valid]
    assert np.array_equal(values.astype(np.float32)[valid], expect)  # what the map starts from
    assert (values[~valid] == 0).all()
    assert red is None and not reduced.saturated.any()


def test_counts_carry_the_automatic_levels_the_jpeg_draws(site):
    _, reply, _ = counts(site, fn=FN, xsize=616, ysize=632)
    grid = reply["meta"]["counts"]["auto"]["grid"]  # the frame's per-block levels
    assert grid["v"] == 1 and grid["shape"] == [2527, 2463]
    _, image = api_image(site, FN)
    assert (grid["white"], grid["black"]) == (image["wval_used"], image["bval_used"])
    _, reply, _ = counts(site, fn="ct.dcm", xsize=512)  # a DICOM window (MR_small): one pair
    _, image = api_image(site, "ct.dcm")
    assert reply["meta"]["counts"]["auto"] == {"pair": [image["wval_used"], image["bval_used"]]}


def api_image(site, fn: str) -> tuple[int, dict]:
    query = urllib.parse.urlencode(
        {"fn": fn, "xsize": 616, "ysize": 632} if fn == FN else {"fn": fn, "xsize": 512}
    )
    status, headers, _ = get(site, f"/api/image?{query}", site.pid)
    return status, json.loads(headers["X-Pyis-Reply"])["job"]


def test_counts_are_sent_plain_to_a_client_without_gzip(site):
    status, headers, body = get(site, f"/api/counts?fn={FN}&xsize=616&ysize=632", site.pid)
    assert status == 200 and "Content-Encoding" not in headers
    layout = json.loads(headers["X-Pyis-Reply"])["meta"]["counts"]
    assert layout["dtype"] == "i4"  # int32 counts above 65535
    assert len(body) == 616 * 632 * 4 + -(-616 * 632 // 8)


def test_counts_of_a_sum_are_the_sums(site):
    status, one, _ = counts(site, fn="eiger/eiger2_data_000001.h5", frame=1, xsize=300)
    status2, two, _ = counts(site, fn="eiger/eiger2_data_000001.h5", frame=1, xsize=300, sum=2)
    assert status == status2 == 200
    assert two["meta"]["sum"] == 2 and two["meta"]["max"] >= one["meta"]["max"]


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"xsize": 4096}, 400, "counts are sent for at most 2048 x 2048 pixels"),
        ({"xsize": 512, "ysize": 2049}, 400, "counts are sent for at most 2048 x 2048 pixels"),
        ({"xsize": 99999999999}, 400, "'xsize' must be between 8 and 10000"),
        ({"xsize": 10**13}, 400, "parameter 'xsize' has a bad value"),
        ({"xsize": 10001}, 400, "'xsize' must be"),
        ({"xsize": 0}, 400, "'xsize' must be"),
        ({"xsize": "nan"}, 400, "parameter 'xsize' has a bad value"),
        ({"xsize": 512, "zoom": 4}, 400, "unknown parameter 'zoom' for counts"),
        ({"xsize": 512, "frame": 9}, 404, "thau_0001.cbf has no frame 9 (frames 1 to 1)"),
    ],
)
def test_hostile_sizes_get_one_clear_refusal(site, params, status, message):
    got, body, _ = counts(site, fn=FN, **params)
    assert got == status and message in body["message"], body


def test_a_file_the_session_may_not_read_is_refused(site):
    status, body, _ = counts(site, fn=f"odd/{SECRET}", xsize=512)
    assert status == 403 and body["message"] == f"permission denied: odd/{SECRET}"
    status, body, _ = counts(site, fn="../../etc/passwd", xsize=512)
    assert status == 403 and body["error"] == "forbidden"
    status, _, _ = get(site, "/api/counts?fn=series/thau_0001.cbf")  # no session
    assert status == 401


def test_the_colour_tables_are_the_workers(site):
    from worker import colormaps

    status, _, body = get(site, "/api/looks")
    assert status == 200
    looks = json.loads(body)
    assert looks["steps"] == colormaps.STEPS and looks["c_look"] == ["linear", "inverted"]
    for name, text in looks["tables"].items():
        scale, cmap = name.split("/")
        table = np.frombuffer(base64.b64decode(text), np.uint8).reshape(-1, 3)
        assert np.array_equal(table, colormaps.table(scale, cmap))
    assert len(looks["tables"]) == len(colormaps.SCALES) * len(colormaps.COLORMAPS)
