"""Run every code path a worker takes once, in the zygote, before any fork.

After the privilege drop a worker may be unable to read the interpreter's standard library
(a Python under a 0700 home, say) or our own tree; any module imported lazily then fails with
ModuleNotFoundError in the middle of a request. So the zygote, still root and still holding no
secret, renders a small synthetic CBF end to end, builds a Redis client and lock, encodes and
decodes a cache value, and resolves a loopback name: whatever those import stays imported in
every child. This also makes the first request of a new session as fast as the tenth.
"""

from __future__ import annotations

import os
import secrets  # noqa: F401  (redis-py imports it lazily when a pool is made)
import socket
import tempfile
import traceback  # noqa: F401  (the worker prints tracebacks to the procmgr's log)

import fabio.cbfimage
import numpy as np


def warm() -> None:
    from pyis_common.errors import NotFound
    from pyis_common.request import parse
    from worker import jobs
    from worker.tier2 import RedisTier, decode, encode

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
        pipeline.run({"type": "meta", "fn": "warm.cbf"})
        stage1, _, _ = pipeline.stage1(parse({"fn": "warm.cbf", "xsize": 16}, need_pid=False))
        decode(encode(stage1.reduced, stage1.meta))
        try:
            pipeline.run({"type": "jpeg", "fn": "missing.cbf"})
        except NotFound:
            pass
        if not result.payloads:
            raise RuntimeError("warm-up rendered nothing")
