"""Frames too big for the heap (worker/bigblocks.py): in a mapping that goes back to a pool
once the array and every view of it are gone, reused for the next array of that size, one
made ahead with its pages faulted in, no more kept than the pool's bound; an Eiger frame that
big decodes to the filter pipeline's pixels through it."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap

import h5py
import hdf5plugin
import numpy as np

from worker import bigblocks
from worker.formats import bslz4

REPO_ROOT = __file__.rsplit("/tests/", 1)[0]
SHAPE = (4096, 2048)  # uint32: exactly bigblocks.MIN_BYTES


def test_small_arrays_are_numpy_s_own_and_big_ones_are_reused_once_every_view_is_gone():
    pool = bigblocks.Pool()
    small = pool.empty((100, 100), np.uint32)
    assert small.base is None and small.flags.owndata  # np.empty's, as before
    big = pool.empty(SHAPE, np.uint32)
    assert big.shape == SHAPE and big.dtype == np.uint32 and big.flags.writeable
    big[:] = 7
    view = big[10:20]
    del big
    gc.collect()
    again = pool.empty(SHAPE, np.uint32)
    assert pool.reused == 0  # a view still holds the first one's memory
    assert int(view.sum()) == 7 * 10 * SHAPE[1]  # and its contents are intact
    del view, again
    gc.collect()
    pool.empty(SHAPE, np.uint32)
    assert pool.reused == 1


def test_no_more_free_mappings_are_kept_than_the_bound():
    pool = bigblocks.Pool(spare_bytes=bigblocks.MIN_BYTES)  # room for one
    arrays = [pool.empty(SHAPE, np.uint32) for _ in range(3)]
    del arrays
    gc.collect()
    assert pool.held() == bigblocks.MIN_BYTES  # one kept, two unmapped
    off = bigblocks.Pool(spare_bytes=0)  # the headroom off (worker_headroom_bytes = 0)
    del_me = off.empty(SHAPE, np.uint32)
    del del_me
    gc.collect()
    assert off.held() == 0 and off.make_ahead() == 0


MADE_AHEAD = textwrap.dedent(
    """
    import json, resource
    import numpy as np
    from worker import bigblocks
    pool = bigblocks.Pool()
    first = pool.empty((4096, 2048), np.uint32)  # the size the next frame will want
    made = pool.make_ahead() if __import__("sys").argv[1] == "ahead" else 0
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = pool.empty((4096, 2048), np.uint32)
    second[:] = 1  # the decoder's writes
    print(json.dumps({"made": made, "reused": pool.reused,
                      "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
    """
)


def _made_ahead(mode: str) -> dict:
    argv = [sys.executable, "-c", MADE_AHEAD, mode]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    return json.loads(done.stdout)


def test_the_mapping_made_ahead_is_written_with_no_page_faults():
    fresh = _made_ahead("fresh")
    assert fresh["reused"] == 0 and fresh["faults"] >= 4000, fresh  # 32 MiB of new pages
    ahead = _made_ahead("ahead")
    assert ahead["made"] == bigblocks.MIN_BYTES and ahead["reused"] == 1, ahead
    assert ahead["faults"] < 100, ahead


def test_an_eiger_frame_that_big_decodes_to_the_filter_pipelines_pixels(tmp_path):
    rng = np.random.default_rng(9)
    frames = rng.poisson(3, (2, *SHAPE)).astype(np.uint32)
    frames[1, 5, :] = np.iinfo(np.uint32).max
    codec = hdf5plugin.Bitshuffle(nelems=0, cname="lz4")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("d", data=frames, chunks=(1, *SHAPE), **codec)
    reused = bigblocks.POOL.reused
    with h5py.File(tmp_path / "d.h5", "r") as f:
        for i in range(2):
            direct = bslz4.read_frame(f["d"], i)
            assert direct is not None and np.array_equal(direct, f["d"][i])
            del direct
            gc.collect()
    assert bigblocks.POOL.reused == reused + 1  # the second frame took the first's mapping


def test_a_mapping_half_made_when_a_job_came_is_finished_next_time():
    pool = bigblocks.Pool()
    first = pool.empty(SHAPE, np.uint32)  # the size wanted
    calls: list[int] = []

    def after_three_chunks() -> bool:
        calls.append(1)
        return len(calls) > 3

    assert pool.make_ahead(after_three_chunks) == 3 * bigblocks.CHUNK
    assert pool.held() == 0  # not free yet: half made
    assert pool.make_ahead() == bigblocks.MIN_BYTES - 3 * bigblocks.CHUNK
    assert pool.held() == bigblocks.MIN_BYTES and pool.make_ahead() == 0
    second = pool.empty(SHAPE, np.uint32)
    assert pool.reused == 1 and second.shape == first.shape
