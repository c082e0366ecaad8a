"""Run every code path a worker takes once, in the zygote, before any fork.

After the privilege drop a worker may be unable to read the interpreter's standard library
(a Python under a 0700 home, say) or our own tree; any module imported lazily then fails with
ModuleNotFoundError in the middle of a request. So the zygote, still root and still holding no
secret, renders a small synthetic CBF end to end, builds a Redis client and lock, encodes and
decodes a cache value, and resolves a loopback name: whatever those import stays imported in
every child. This also makes the first request of a new session as fast as the tenth.

Every reader runs once: an Eiger master with bitshuffle/LZ4 data files (and its pixel mask),
DICOM in each transfer syntax we decode (native, RLE, JPEG 2000 through Pillow) and one we
refuse, a 32-bit TIFF; then a spots job and a meta job on each.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import secrets  # noqa: F401  (redis-py imports it lazily when a pool is made)
import socket
import tempfile
import threading
import traceback  # noqa: F401  (the worker prints tracebacks to the procmgr's log)
from collections.abc import Callable
from typing import Any

import fabio.cbfimage
import fabio.tifimage
import numpy as np
import pydicom


def warm() -> None:
    from pyis_common import jobtypes
    from pyis_common.errors import NotFound
    from pyis_common.request import parse
    from worker import jobs
    from worker.index import IndexSettings
    from worker.tier2 import RedisTier
    from worker.tier2format import decode, encode

    "127.0.0.1".encode("idna")  # socket.getaddrinfo encodes host names with the idna codec
    socket.getaddrinfo("127.0.0.1", 9, proto=socket.IPPROTO_TCP)
    tier = RedisTier("redis://warm:up@127.0.0.1:9/0", "warm:", 1)
    tier.client.lock("warm:lock", timeout=1, blocking_timeout=0.1)
    tier.client.connection_pool.make_connection()
    with tempfile.TemporaryDirectory(prefix="pyis-warm-") as tmp:
        data = np.arange(64 * 48, dtype=np.int32).reshape(48, 64)
        data[5, :] = -1  # a gap row: the masked path
        image = fabio.cbfimage.CbfImage(data=data, header={})
        image.write(os.path.join(tmp, "warm.cbf"))
        pipeline = jobs.Pipeline(home=tmp, cache_bytes=1 << 20)
        result = pipeline.run(
            {"type": "jpeg", "fn": "warm.cbf", "xsize": 16, "label": "warm", "labelHeight": 12}
        )
        for row in jobtypes.TABLE:  # every type the pipeline runs in a request's time
            served = row.answered_by is jobtypes.AnsweredBy.PIPELINE
            if served and row.deadline is jobtypes.Deadline.REQUEST:
                pipeline.run({"type": row.name, "fn": "warm.cbf" if row.needs_file else "."})
        stage1, key, _ = pipeline.stage1(
            parse({"type": "jpeg", "fn": "warm.cbf", "xsize": 16}, need_pid=False)
        )
        decode(encode(stage1.reduced, stage1.meta) or b"", key)
        try:
            pipeline.run({"type": "jpeg", "fn": "missing.cbf"})
        except NotFound:
            pass
        if not result.payloads:
            raise RuntimeError("warm-up rendered nothing")
        # the index path: subprocess, a private temp dir, the progress relay thread
        pipeline.index_settings = IndexSettings(("/bin/sh", "-c", "echo warm >&2; echo {}", "sh"))
        pipeline.run({"type": "index", "fn": "warm.cbf"}, progress=lambda _line: None)
        _formats(pipeline, tmp)


REHEARSAL_FILE = "rehearsal.cbf"


PREFAULT_BYTES = 48 << 20  # per rehearsal thread; all of them below KEEP_FREE_BYTES: kept
PREFAULT_BLOCK = 8 << 20  # below MMAP_FROM_BYTES: taken from the arena, not mapped
REHEARSAL_THREADS = 2  # a worker's first job thread and the helper that halves a big frame
REHEARSAL_WAIT_S = 30.0  # a rehearsal thread that fails frees the others at once; a backstop


def rehearse_in_a_temporary_folder() -> None:
    """:func:`rehearse` on a tiny CBF of our own, in a 0700 folder removed right after (a
    folder kept for the zygote's life was left behind whenever the zygote was killed)."""
    with tempfile.TemporaryDirectory(prefix="pyis-spare-") as home:
        image = fabio.cbfimage.CbfImage(data=np.zeros((48, 64), np.int32), header={})
        image.write(os.path.join(home, REHEARSAL_FILE))
        rehearse(home)


def rehearse_on_threads() -> None:
    """In a spare, before its order: :func:`rehearse_in_a_temporary_folder` on a thread, and
    PREFAULT_BYTES written and freed on each of REHEARSAL_THREADS threads alive together;
    every thread is joined before this returns, so none is left at the privilege drop.

    A fresh child's heap pages are new to the kernel: a worker's first image wrote every
    buffer into fresh pages (Pilatus 6M: ~5000 page faults, zeroed pages costing 3-40 us each
    on this VM), which its later images reuse. The memory written here stays in the worker's
    one malloc arena (:func:`tune_malloc`), so its first job thread and its first helper
    (worker/halves.py) find pages already faulted in (a first Pilatus image in a fresh child:
    ~5000 -> ~240 faults). The memory holds nothing (ones, then free), and the threads run as
    root only before any identity exists, after ``no_new_privs`` (procmgr/zygote.py)."""
    together = threading.Barrier(REHEARSAL_THREADS, timeout=REHEARSAL_WAIT_S)
    failed: list[BaseException] = []

    def prefault(rehearse_first: bool) -> None:
        try:
            if rehearse_first:
                rehearse_in_a_temporary_folder()
            count = PREFAULT_BYTES // PREFAULT_BLOCK
            blocks = [np.ones(PREFAULT_BLOCK, np.uint8) for _ in range(count)]
            together.wait()  # both threads' blocks held at once: the first image's peak
            del blocks
        except BaseException as exc:
            together.abort()  # the others stop waiting
            failed.append(exc)

    threads = [
        threading.Thread(target=prefault, args=(n == 0,), name=f"rehearsal-{n}")
        for n in range(REHEARSAL_THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:  # the spare fails as it did when the rehearsal ran on its main thread
        raise failed[0]


def rehearse(home: str) -> None:
    """In a spare, before its order: a worker's start (worker/main.py's ``prepare``, a config
    message) and a first meta and jpeg job, on a tiny file of our own; no thread started,
    no connection made, nothing kept (descriptors are closed at the order, the objects freed).

    A fork shares the zygote's pages until each is written, and Python writes every object it
    touches (reference counts): a new worker's start and first small job copied ~3700 pages,
    and took 27 ms instead of 10 here. Rehearsed, a spare has copied them before a session
    waits on it."""
    from concurrent.futures import ThreadPoolExecutor

    from worker import follow, followlean
    from worker import main as worker_main

    pipeline, configured = worker_main.prepare({"settings": {}}, home)
    rehearsal = "redis://rehearsal:rehearsal@127.0.0.1:9/0"  # never connected to
    configured.apply({"settings": {}, "cache": {"url": rehearsal, "prefix": "rehearsal:"}})
    pipeline.tier2 = None
    with ThreadPoolExecutor(1) as pool:  # never given a job: no thread starts
        follow.Follows(home, followlean.Lean(pipeline).render, pool)
    pipeline.run({"type": "meta", "fn": REHEARSAL_FILE})
    pipeline.run({"type": "jpeg", "fn": REHEARSAL_FILE, "xsize": 16, "labelHeight": 12})


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
# freed heap kept for the next request's buffers, per worker: above what the rehearsal threads
# hold at once (REHEARSAL_THREADS x PREFAULT_BYTES), since all threads share the one arena and
# a top over the threshold is trimmed whole (at 64 MiB, a fresh worker's first Pilatus image
# took 49-64 ms instead of 26-31, medians of 8 sessions; bench/interactive.py's Pilatus
# fresh_cold_ratio 0.84-1.04 against 0.32-0.92: its later buffers faulted in anew)
KEEP_FREE_BYTES = 128 << 20
MMAP_FROM_BYTES = 32 << 20  # larger blocks (an Eiger 16M frame) are mapped and unmapped
ARENAS = 1  # one heap for all of a worker's threads (why: tune_malloc)


def tune_malloc() -> bool:
    """Keep freed buffers for reuse instead of handing them back to the kernel.

    With glibc's defaults every stage-2 buffer of a few MB (planes, indices, pixels) comes
    from fresh pages: the heap top is trimmed each time the request frees them, so the next
    request page-faults them in again (a 600 px map: about 700 faults, a third of its time).
    A fixed threshold also ends glibc's sliding one, which a freed frame raises. Blocks
    above MMAP_FROM_BYTES are still mapped apart, so a worker gives a big frame's memory back
    when the LRU drops it.

    One arena: with glibc's arena per thread, memory one thread freed is kept for that
    thread's arena only, and which thread decodes which half of a frame, or renders it, changes
    from frame to frame (a busy helper's half is taken back). About one followed 6M frame in
    thirty then took ~25 MB of fresh memory, faulted in as transparent huge pages that this
    VM's host backs anew, and read in 20-55 ms instead of 5 (bench/live.py at 100 Hz: p99 53
    -> 25 ms, no read over 14 ms). The worker's threads allocate a few large buffers per
    request, so sharing one arena costs no lock contention we could measure
    (bench/interactive.py). A worker also keeps free heap at its top faulted in, refilled
    while it is quiet (worker/headroom.py). False where the C library is not glibc."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    return bool(
        mallopt(M_TRIM_THRESHOLD, KEEP_FREE_BYTES)
        and mallopt(M_MMAP_THRESHOLD, MMAP_FROM_BYTES)
        and mallopt(M_ARENA_MAX, ARENAS)
    )


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The C library, loaded once, in the zygote (``find_library`` runs ``ldconfig``: ~1.2
    ms a call); errno kept for callers that read it (worker/headroom.py). None if it cannot
    be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _glibc(function: str) -> Callable[..., int] | None:
    """``function`` of the C library; None where it has none (not glibc)."""
    loaded = libc()
    return getattr(loaded, function, None) if loaded is not None else None


def freeze() -> None:
    """Just before forking: move everything the warm-up made into the collector's permanent
    generation, so a child's collections never touch (and so never copy) the zygote's objects,
    which would otherwise cost a new worker page faults over the whole inherited heap; and give
    the warm-up's freed heap (up to KEEP_FREE_BYTES, kept by :func:`tune_malloc`) back to the
    kernel, so a child writing there takes zeroed pages instead of copying each one from the
    zygote (copy on write)."""
    gc.collect()
    gc.freeze()
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is not None:  # not glibc: nothing was kept either
        malloc_trim(0)


def _formats(pipeline: Any, tmp: str) -> None:
    """A jpeg, a spots and a meta job on a tiny file of every other format."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    from pyis_common.errors import Incomplete, Unsupported
    from worker.formats import samples

    frames = np.arange(4 * 24 * 32, dtype=np.uint32).reshape(4, 24, 32)
    mask = np.zeros((24, 32), np.uint8)
    mask[3, :] = 1
    header = {  # fixed-length ASCII (DECTRIS) and variable-length UTF-8 strings decode apart
        "description": np.bytes_(b"Dectris EIGER warm-up"),
        "detectorSpecific/software_version": "1.8.0",
        "beam_center_x": np.float32(16.0),
    }
    samples.write_eiger(tmp, "warm", frames, per_file=2, mask=mask, header=header)
    files = {"warm_master.h5": 3, "warm_data_000002.h5": 4, "warm.tif": 1}  # name: frame
    for syntax in samples.SYNTAXES:
        samples.write_dicom(os.path.join(tmp, f"{syntax}.dcm"), frames[:, :8, :8], syntax, (9, 4))
        files[f"{syntax}.dcm"] = 2
    fabio.tifimage.TifImage(data=frames[0]).write(os.path.join(tmp, "warm.tif"))
    for name, frame in files.items():
        pipeline.run({"type": "jpeg", "fn": name, "frame": frame, "xsize": 16, "labelHeight": 12})
        pipeline.run({"type": "spots", "fn": name, "xsize": 16})
        pipeline.run({"type": "meta", "fn": name})
    samples.write_dicom(os.path.join(tmp, "refused.dcm"), frames[0, :8, :8])
    refused = pydicom.dcmread(os.path.join(tmp, "refused.dcm"))
    refused.file_meta.TransferSyntaxUID = JPEGLosslessSV1  # a syntax we have no decoder for
    refused.PixelData = encapsulate([bytes(16)])  # refused before any decoding is tried
    refused.save_as(os.path.join(tmp, "refused.dcm"))
    os.remove(os.path.join(tmp, "warm_data_000001.h5"))
    pipeline = type(pipeline)(home=tmp, cache_bytes=1 << 20)  # frame 1 is held: read it again
    for name, error in (("warm_master.h5", Incomplete), ("refused.dcm", Unsupported)):
        try:  # a master without its first data file; a syntax without a decoder
            pipeline.run({"type": "jpeg", "fn": name})
        except error:
            continue
        raise RuntimeError(f"warm-up: {name} was not refused")
