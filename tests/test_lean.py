"""The lean interactive path (issue 14): what its shortcuts must keep.

Automatic-level planes made by matrix products are still the bilinear levels at each output
pixel's centre; the colour-map index made with one reciprocal is still the level's position;
the malloc tuning the zygote applies really keeps freed buffers for the next request; the
cache Redis's admin calls happen on the admin thread, never on the procmgr loop's; a cold
image's tier-2 write and lock release wait for its reply, in that order.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import redis

from procmgr.cacheacl import CacheAcl
from pyis_common.request import parse
from pyisdev import procs
from worker import colormaps, jobs, levels
from worker.afterreply import AfterReply
from worker.tier2 import RedisTier
from worker.warmup import KEEP_FREE_BYTES, PREFAULT_BYTES, REHEARSAL_THREADS

REPO_ROOT = __file__.rsplit("/tests/", 1)[0]


def _bilinear(grid: np.ndarray, block: float, window: slice, out_len: int, i: int) -> tuple:
    """Output pixel ``i``'s two grid cells and the upper one's weight, written out."""
    centre = window.start + (i + 0.5) * (window.stop - window.start) / out_len
    pos = min(max(centre / block - 0.5, 0.0), grid - 1.0)
    low = int(pos)
    return low, min(low + 1, grid - 1), pos - low


def _reference(stats: levels.LevelStats, rows: slice, cols: slice, shape: tuple) -> tuple:
    gy, gx = stats.background.shape
    white = np.empty(shape, np.float64)
    black = np.empty(shape, np.float64)
    for i in range(shape[0]):
        y0, y1, wy = _bilinear(gy, stats.block[0], rows, shape[0], i)
        for j in range(shape[1]):
            x0, x1, wx = _bilinear(gx, stats.block[1], cols, shape[1], j)
            cells = [(y0, x0, (1 - wy) * (1 - wx)), (y0, x1, (1 - wy) * wx)]
            cells += [(y1, x0, wy * (1 - wx)), (y1, x1, wy * wx)]
            bg = sum(w * float(stats.background[y, x]) for y, x, w in cells)
            span = sum(w * float(stats.span[y, x]) for y, x, w in cells)
            white[i, j] = bg - span * levels.WHITE_FRACTION
            black[i, j] = bg + span
    return white, black


@pytest.mark.parametrize(
    ("rows", "cols", "shape"),
    [
        (slice(0, 2527), slice(0, 2463), (41, 40)),  # the whole frame, reduced
        (slice(600, 1232), slice(1200, 1816), (53, 57)),  # a zoom segment
        (slice(0, 30), slice(2400, 2463), (60, 126)),  # sampled up, at the last blocks
        (slice(0, 2527), slice(0, 2463), (1, 1)),
    ],
)
def test_planes_are_the_bilinear_levels_at_each_output_pixel(rows, cols, shape) -> None:
    rng = np.random.default_rng(7)
    background = (rng.random((23, 22)) * 400 + 10).astype(np.float32)
    span = (rng.random((23, 22)) * 50 + 4).astype(np.float32)
    stats = levels.LevelStats((2527, 2463), (110.0, 112.0), background, span, 1.0, 60.0)
    white, black = stats.planes(rows, cols, shape)
    want_white, want_black = _reference(stats, rows, cols, shape)
    assert white.shape == black.shape == shape and white.dtype == black.dtype == np.float32
    np.testing.assert_allclose(white, want_white, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(black, want_black, rtol=1e-5, atol=1e-3)


def test_colormap_index_is_the_position_between_the_levels() -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(-50, 5000, (64, 48)).astype(np.int32)
    white = (rng.random((64, 48)) * 100).astype(np.float32)
    black = white + (rng.random((64, 48)) * 900 + 1).astype(np.float32)
    steps = colormaps.STEPS - 1
    want = np.clip((data - white.astype(np.float64)) / (black - white), 0, 1) * steps
    got = colormaps.index(data, white, black)
    assert got.dtype == np.uint16 and got.shape == data.shape
    assert np.abs(got.astype(np.int64) - np.floor(want)).max() <= 1  # a rounding, no more
    assert got[data <= white].max(initial=0) == 0 and (got[data >= black] == steps).all()
    scalar = colormaps.index(data, 100.0, 200.0)  # the scalar levels of the C rule
    assert (scalar[data <= 100] == 0).all() and (scalar[data >= 200] == steps).all()
    flat = colormaps.index(data, 100.0, 100.0)  # no span at all: a step at the white level
    assert (flat[data <= 100] == 0).all() and (flat[data > 100] == steps).all()


FAULTS = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from worker import warmup
    if sys.argv[1] == "tuned":
        assert warmup.tune_malloc()
    def request():  # a stage 2's buffers: three of 2 MiB, written, then freed
        buffers = [np.ones(1 << 19, np.float32) for _ in range(3)]
        del buffers
    request(); request()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        request()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
    """
)


CROSS_THREAD_FAULTS = textwrap.dedent(
    """
    import resource, sys, threading
    import numpy as np
    from worker import warmup
    if sys.argv[1] == "tuned":
        assert warmup.tune_malloc()
    freed, done, faults = threading.Event(), threading.Event(), []
    def decoder():  # a frame's half decoded on one thread, freed; the thread lives on
        buffer = np.ones(24 << 20, np.uint8)
        del buffer
        freed.set()
        done.wait()
    def renderer():  # the next frame's buffer, taken on another thread
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        buffer = np.ones(24 << 20, np.uint8)
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
        del buffer
    first = threading.Thread(target=decoder)
    first.start()
    freed.wait()
    second = threading.Thread(target=renderer)
    second.start()
    second.join()
    done.set()
    first.join()
    print(faults[0])
    """
)


def _faults(script: str, mode: str) -> int:
    argv = [sys.executable, "-c", script, mode]
    env = os.environ | {"NUMPY_MADVISE_HUGEPAGE": "0"}  # 4 KiB pages: a count of pages
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO_ROOT, env=env)
    return int(done.stdout)


def test_tuned_malloc_reuses_freed_buffers_instead_of_faulting_them_in_again() -> None:
    assert KEEP_FREE_BYTES >= 3 * (2 << 20)
    untuned = _faults(FAULTS, "default")
    assert untuned >= 500, untuned  # glibc's default: 6 MiB of fresh pages every time
    assert _faults(FAULTS, "tuned") < 50


BIG_REQUEST_FAULTS = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from worker import warmup
    warmup.KEEP_FREE_BYTES = int(sys.argv[1])
    assert warmup.tune_malloc()
    def request():  # a first big image's buffers: the rehearsal's peak, then freed
        count = warmup.REHEARSAL_THREADS * warmup.PREFAULT_BYTES // warmup.PREFAULT_BLOCK
        blocks = [np.ones(warmup.PREFAULT_BLOCK, np.uint8) for _ in range(count)]
        del blocks
    request()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    request()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def test_tuned_malloc_keeps_the_rehearsal_s_peak_whole() -> None:
    """One arena holds every thread's frees, and glibc trims a top over the threshold whole:
    the threshold must exceed what the rehearsal threads hold at once, or a first image's later
    buffers fault in anew (the same request at a 64 MiB threshold: ~16,000 faults)."""
    assert KEEP_FREE_BYTES > REHEARSAL_THREADS * PREFAULT_BYTES
    assert _faults(BIG_REQUEST_FAULTS, str(64 << 20)) >= 5000
    assert _faults(BIG_REQUEST_FAULTS, str(KEEP_FREE_BYTES)) < 50


FREED_BEFORE_FORK = textwrap.dedent(
    """
    import re
    import numpy as np
    from worker import warmup
    assert warmup.tune_malloc()
    def resident_mib():
        return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read())[1]) >> 10
    blocks = [np.ones(warmup.PREFAULT_BLOCK, np.uint8) for _ in range(12)]  # a warm-up's 96 MiB
    del blocks
    kept = resident_mib()
    warmup.freeze()
    print(kept - resident_mib())
    """
)


def test_the_zygote_hands_its_freed_heap_back_before_forking() -> None:
    """The heap tune_malloc keeps would be the zygote's, shared with every child it forks:
    freeze() gives it back, so a spare writing there takes zeroed pages, not copies."""
    argv = [sys.executable, "-c", FREED_BEFORE_FORK]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert int(done.stdout) >= 64, done.stdout  # MiB no longer resident


def test_tuned_malloc_gives_one_thread_what_another_freed() -> None:
    """One arena for all threads: a buffer freed on a thread that lives on is memory the next
    thread's buffer reuses, not ~25 MB of fresh pages (worker/warmup.py ``tune_malloc``)."""
    untuned = _faults(CROSS_THREAD_FAULTS, "default")
    assert untuned >= 5000, untuned  # a second thread's own arena: 24 MiB of new pages
    assert _faults(CROSS_THREAD_FAULTS, "tuned") < 50


KEPT_BETWEEN_RENDERS_FAULTS = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from worker import offheap, warmup
    assert warmup.tune_malloc()
    keep = np.copy if sys.argv[1] == "heap" else lambda a: offheap.copies((a,))[0]
    def render():  # a followed frame's buffers, freed; its small stage 1 returned
        halves = [np.ones(12 << 20, np.uint8) for _ in range(2)]
        whole = np.ones(24 << 20, np.uint8)
        del halves
        return whole[: 1 << 20].copy()
    kept, faults = [], 0
    kept.append(keep(render()))  # the first render's pages are new either way
    for _ in range(6):  # the LRU still filling: nothing it held is freed yet
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        stage1 = render()
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        kept.append(keep(stage1))
        del stage1
    print(faults)
    """
)


def test_stage_1_kept_out_of_the_heap_leaves_the_renders_memory_whole() -> None:
    """A followed frame's stage 1 kept in the heap cuts the stretch the next render's
    buffers were freed into, so every render faults in more fresh pages; kept in a mapping of
    its own (worker/offheap.py), it leaves the stretch whole."""
    assert _faults(KEPT_BETWEEN_RENDERS_FAULTS, "heap") >= 1000  # 256+ pages a render
    assert _faults(KEPT_BETWEEN_RENDERS_FAULTS, "off") < 50


def test_off_heap_copies_share_one_mapping_of_their_own_unmapped_with_them() -> None:
    import mmap

    from worker import offheap

    data = np.arange(256 * 300, dtype=np.int32).reshape(256, 300)
    flags = np.zeros((256, 300), bool)
    flags[3, 5] = True
    before = offheap.live()
    kept = offheap.copies((data, flags))
    assert kept is not None and offheap.live() == before + 1  # one mapping for both
    for copy, array in zip(kept, (data, flags), strict=True):
        assert copy.dtype == array.dtype and copy.shape == array.shape
        assert np.array_equal(copy, array) and copy.flags.c_contiguous and copy.flags.writeable
        assert isinstance(copy.base, mmap.mmap) and not np.shares_memory(copy, array)
    assert kept[0].base is kept[1].base
    del copy, kept
    assert offheap.live() == before  # unmapped with its last array


def test_small_values_and_values_past_the_mapping_cap_stay_in_the_heap(monkeypatch) -> None:
    from worker import offheap

    assert offheap.copies((np.zeros(16, np.int32),)) is None  # under MIN_BYTES
    big = np.zeros(offheap.MIN_BYTES, np.uint8)
    monkeypatch.setattr(offheap, "MAX_MAPPINGS", offheap.live() + 1)
    first = offheap.copies((big,))
    assert first is not None and offheap.copies((big,)) is None  # the cap: never past it


def test_cache_users_are_made_on_the_admin_thread_while_the_caller_goes_on(tmp_path: Path):
    """prepare() and ensure() hand the work to the admin thread: with the cache Redis stopped
    (SIGSTOP: every call would hang) both return, and the user is made once it answers."""
    password = secrets.token_urlsafe(24)
    pass_file = tmp_path / "admin.pass"
    pass_file.write_text(password)
    os.chmod(pass_file, 0o600)
    digest = hashlib.sha256(password.encode()).hexdigest()
    admin = ["--user", "pyis-admin", "on", f"#{digest}", "~*", "&*", "+@all"]
    server, port = procs.redis_server(tmp_path, admin)
    url = f"redis://127.0.0.1:{port}/0"
    acl = CacheAcl(url, 600, "pyis-admin", str(pass_file))
    try:
        acl.start()
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            acl.prepare(4242)
            acl.ensure(force=True)
            assert acl.ready(4242) is None  # still waiting for Redis, on the admin thread
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        for _ in range(40):  # a setup that timed out while Redis was stopped is made again
            credential = acl.credential(4242)
            if credential is not None:
                break
        assert credential is not None and acl.ready(4242) is True
        # each finished setup makes ``fd`` readable (the loop polls it); one read drains it
        assert select.select([acl.fd], [], [], 5.0)[0] and acl.setups_done()
        assert not acl.setups_done()
        worker = redis.Redis.from_url(credential["url"])
        assert worker.set(f"{credential['prefix']}s1:x", b"ok")
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.get(f"{acl.prefix(4343)}s1:x")
    finally:
        acl.close()
        server.stop()


def test_a_cold_images_tier2_write_and_lock_release_come_after_its_reply(tmp_path: Path):
    import fabio.cbfimage

    data = np.arange(48 * 64, dtype=np.int32).reshape(48, 64)
    fabio.cbfimage.CbfImage(data=data, header={}).write(str(tmp_path / "a.cbf"))
    stage1, key, _ = jobs.Pipeline(str(tmp_path)).stage1(
        parse({"type": "jpeg", "fn": "a.cbf", "xsize": 32}, need_pid=False)
    )
    entry = (stage1.reduced, stage1.meta, stage1.level_stats)
    server, port = procs.redis_server(tmp_path)
    try:
        tier = RedisTier(f"redis://127.0.0.1:{port}/0", "pyis:e1:", 60)
        store = redis.Redis(port=port)
        with AfterReply() as after:  # as a job thread runs a job
            value, tier_name = tier.produce(key, lambda: entry, cacheable=lambda: True)
        assert value is entry and tier_name == "file"
        # the reply goes out here: nothing shared yet, and followers still wait for us
        assert store.get(tier.name(key)) is None
        assert store.exists(tier.name(key) + ":lock")
        after.run()
        assert store.get(tier.name(key)) is not None and tier.get(key) is not None
        assert not store.exists(tier.name(key) + ":lock")
        store.delete(tier.name(key))
        tier.put(key, entry)  # no reply being made (warm-up, a follower's thread): at once
        assert store.get(tier.name(key)) is not None
    finally:
        server.stop()
