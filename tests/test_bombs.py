"""Bomb files: kilobytes that declare hundreds of megabytes are refused before anything is
allocated, in bytes (not pixels), by every reader.

The HDF5 cases are the issue's: a 3.4 KB file cost 2.4 GiB and seconds per frame (unwritten
chunks read as fill value). The other formats' libraries refuse these crafted files too, late;
the budget refuses them first, naming the declared size. Through the real stack the same files
are in the hostile catalog (tests/test_garbage.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import hdf5plugin
import numpy as np
import pytest

from pyis_common.errors import Unsupported
from tests.conftest import REPO
from tests.support import bombs
from worker.formats import budget, read_frame, read_meta

WHY = {  # the refusal's reason, as the sentence gives it
    "unwritten.h5": "stores 0 bytes",
    "unallocated.h5": "stores 0 bytes",
    "uint64.h5": "2048 MiB decoded",
    "tiny_chunks.h5": "262144 chunks",
    "declared.cbf": "stores 3000 bytes",
    "declared.tif": "12000x12000 pixels",
    "declared.edf": "9000x9000 pixels",
    "declared.dcm": "16000x16000 pixels",
}


@pytest.mark.parametrize("name", list(bombs.BOMBS))
def test_a_bomb_is_refused_with_its_reason(tmp_path, name):
    path = tmp_path / name
    bombs.BOMBS[name](path)
    assert path.stat().st_size < 4096  # a few kilobytes on disk
    with pytest.raises(Unsupported) as refused:
        read_frame(str(path))
    assert WHY[name] in str(refused.value)
    assert name in str(refused.value)


PEAK = """
import json, resource, sys
from worker.formats import read_frame
from pyis_common.errors import Unsupported
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
codes = {}
for path in sys.argv[1:]:
    try:
        read_frame(path)
        codes[path] = "served"
    except Unsupported:
        codes[path] = "unsupported"
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"codes": codes, "grown_kib": grown}))
"""


def test_reading_every_bomb_costs_almost_no_memory(tmp_path):
    """In a fresh process: peak RSS grows by less than 32 MiB over all of them (it grew by
    2.3 GiB for the uint64 file alone before the byte budget)."""
    paths = [str(p) for p in bombs.write_all(tmp_path)]
    run = subprocess.run(
        [sys.executable, "-c", PEAK, *paths], capture_output=True, cwd=REPO, timeout=120
    )
    result = json.loads(run.stdout)
    assert set(result["codes"].values()) == {"unsupported"}, result
    assert result["grown_kib"] < 32 << 10, result


def test_a_header_value_in_a_huge_chunk_is_not_read(tmp_path):
    """A "scalar" stored as one element of a 64 MiB compressed chunk would decompress the whole
    chunk for each header value; it is left out instead."""
    path = tmp_path / "header.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(bombs.DATA, data=np.ones((1, 8, 8), np.uint16), chunks=(1, 8, 8))
        big = f.create_dataset(
            "/entry/instrument/detector/count_time",
            (1 << 23,),
            "f8",
            chunks=(1 << 23,),
            compression="gzip",
        )
        big[0] = 0.25
        f["/entry/instrument/detector/x_pixel_size"] = 75e-6
    assert path.stat().st_size < 1 << 20
    meta = read_meta(str(path))
    assert "count_time" not in meta
    assert meta["x_pixel_size"] == pytest.approx(75e-6)  # an ordinary value still is


def test_real_compression_stays_inside_the_budget(tmp_path):
    """An all-zero 4k frame, bitshuffle/LZ4-compressed as an Eiger writes it, is served: the
    expansion bound is above what real codecs reach."""
    path = tmp_path / "zeros.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            bombs.DATA,
            data=np.zeros((1, 4096, 4096), np.uint32),
            chunks=(1, 4096, 4096),
            **hdf5plugin.Bitshuffle(cname="lz4"),
        )
    stored = path.stat().st_size
    assert 4096 * 4096 * 4 / stored < budget.EXPANSION_MAX
    assert read_frame(str(path)).data.shape == (4096, 4096)
