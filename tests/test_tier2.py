"""Tier 2 values: every dtype a reader returns round-trips through the real cache Redis, and a
value whose shape the key's request would not produce is refused (and removed)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from procmgr.cacheacl import CacheAcl
from worker import levels
from worker.afterreply import AfterReply
from worker.cache import Key
from worker.reduce import Reduced, stats
from worker.tier2 import RedisTier
from worker.tier2format import HEADER, MAX_HEADER, DecodeError, decode, encode


def _reduced(data: np.ndarray) -> Reduced:
    valid = np.ones(data.shape, bool)
    valid[0, 0] = False
    saturated = np.zeros(data.shape, bool)
    saturated[-1, -1] = True
    return Reduced(data, valid, saturated, stats(data, valid, saturated))


def _key(xsize: int, ysize: int | None = None, ino: int = 1) -> Key:
    return Key(1, "a.h5", 1, ino, 4096, 1, 1, 1.0, 0.0, 0.0, xsize, ysize)


@pytest.fixture
def tier(site):
    """A RedisTier with a real ESAF credential from the procmgr's own CacheAcl code."""
    stack = site.stack
    acl = CacheAcl(stack.cache_redis_url, 600, "pyis-admin", str(stack.cache_password_file))
    acl.start()
    credential = acl.credential(490000 + int(site.accounts.tag) % 9999)
    assert credential is not None
    return RedisTier(credential["url"], credential["prefix"], 60)


def test_uint64_and_int8_entries_round_trip_through_the_cache(site, tier):
    big = np.array([[2**63 + 5, 7, 2**64 - 1], [1, 2, 3]], np.uint64)  # beyond float64's 2**53
    signed = np.array([[-128, 0, 127], [5, -5, 1]], np.int8)
    for ino, data in enumerate((big, signed), start=10):
        key = _key(3, ino=ino)
        (value, meta), tier_name = tier.produce(
            key, lambda d=data: (_reduced(d), {"format": "test"}), cacheable=lambda: True
        )
        assert tier_name == "file"
        hit = tier.get(key)
        assert hit is not None, f"{data.dtype} entry was written but refused"
        assert hit[0].data.dtype == data.dtype and np.array_equal(hit[0].data, data)
        assert np.array_equal(hit[0].valid, value.valid)
        assert np.array_equal(hit[0].saturated, value.saturated)
        assert hit[1] == {"format": "test"}
        # the lock was released by the preloaded script (workers may not load it themselves)
        assert not site.stack.cache_redis.exists(tier.name(key) + ":lock")
    assert tier.counters()["redis_hits"] == 2 and tier.counters()["redis_errors"] == 0


def test_one_round_trip_finds_the_entry_or_takes_the_lock_released_after_the_reply(site, tier):
    """A cold image's ``lookup`` (GET + SET NX in one pipeline): a miss holds the producer's
    lock until the reply's deferred work runs, on another thread than the job's (the worker's
    after-reply thread); a hit that found the lock free gives it back the same way."""
    admin = site.stack.cache_redis
    key = _key(3, ino=31)
    lock_name = tier.name(key) + ":lock"
    data = np.arange(6, dtype=np.int32).reshape(2, 3)
    done: list[tuple] = []

    def job(after: AfterReply) -> None:
        with after:
            looked = tier.lookup(key)
            assert looked.value is None and looked.token is not None
            assert admin.exists(lock_name)  # ours, for other workers to wait on
            compute = lambda: (_reduced(data), {}, None)  # noqa: E731
            done.append(tier.produce(key, compute, lambda: True, looked=looked))

    after = AfterReply()
    thread = threading.Thread(target=job, args=(after,))
    thread.start()
    thread.join(10)
    assert done and done[0][1] == "file"
    assert admin.exists(lock_name) and not admin.exists(tier.name(key))  # both wait for later
    after.run()  # here: not the thread that took the lock
    assert admin.exists(tier.name(key)) and not admin.exists(lock_name)
    with AfterReply() as again:
        hit = tier.lookup(key)
    assert hit.value is not None and hit.token is None
    assert np.array_equal(hit.value[0].data, data)
    again.run()
    assert not admin.exists(lock_name)


def test_big_endian_data_is_stored_in_native_order():
    data = np.array([[1, 2, 300], [4, 5, 60000]], ">u2")
    reduced, _, _ = decode(encode(_reduced(data), {}), _key(3))  # no level stats: None
    assert reduced.data.dtype == np.uint16 and reduced.data.tolist() == data.tolist()


def test_a_dtype_decode_would_refuse_is_not_written():
    assert encode(_reduced(np.zeros((2, 3), np.float16)), {}) is None


@pytest.mark.parametrize(
    "shape,xsize,ysize,fits",
    [
        ((100, 300), 300, None, True),
        ((100, 300), 512, None, False),  # another request's width
        ((10000, 300), 300, None, True),
        ((10001, 300), 300, None, False),
        ((200, 300), 300, 250, True),  # touches the width, inside the height
        ((250, 120), 300, 250, True),  # touches the height, inside the width
        ((260, 300), 300, 250, False),  # taller than the box
        ((200, 250), 300, 250, False),  # touches neither side
    ],
)
def test_decode_checks_the_shape_against_the_request(shape, xsize, ysize, fits):
    blob = encode(_reduced(np.ones(shape, np.uint16)), {})
    if fits:
        assert decode(blob, _key(xsize, ysize))[0].data.shape == shape
    else:
        with pytest.raises(DecodeError, match="shape"):
            decode(blob, _key(xsize, ysize))


def test_a_forged_entry_of_the_wrong_shape_is_a_miss_and_removed(site, tier):
    """What another (compromised) worker of the ESAF could write under a key's name: a
    2000x2000 image for a 256 px request. It is refused before any array is built."""
    key = _key(256, ino=99)
    forged = encode(_reduced(np.zeros((2000, 2000), np.uint8)), {})
    site.stack.cache_redis.set(tier.name(key), forged)
    assert tier.get(key) is None
    assert not site.stack.cache_redis.exists(tier.name(key))


# -- hostile values: what another worker of the ESAF (compromised) could store --------------

GOOD = encode(_reduced(np.arange(6, dtype=np.uint16).reshape(2, 3)), {"detector": "x"})


def _parts(blob: bytes) -> tuple[dict, bytes]:
    (hlen,) = HEADER.unpack_from(blob)
    return json.loads(blob[HEADER.size : HEADER.size + hlen]), blob[HEADER.size + hlen :]


def _forged(header: bytes, body: bytes | None = None) -> bytes:
    return HEADER.pack(len(header)) + header + (_parts(GOOD)[1] if body is None else body)


def _with(**fields: object) -> bytes:
    header, body = _parts(GOOD)
    return _forged(json.dumps(header | fields).encode(), body)


HOSTILE = {
    "empty": b"",
    "header longer than the value": HEADER.pack(1000) + b"{}",
    "header over the cap": HEADER.pack(MAX_HEADER + 1) + b"{" * 8,
    "not JSON": _forged(b"\xff\xfe{"),
    "a JSON list": _forged(b"[]"),
    "a JSON string": _forged(b'"uint16"'),
    "JSON null": _forged(b"null"),
    "nested past the recursion limit": _forged(b"[" * 200000 + b"]" * 200000),
    "object dtype": _with(dtype="object"),
    "unicode dtype": _with(dtype="<U8"),
    "dtype a list": _with(dtype=["uint16"]),
    "shape of bools": _with(shape=[True, 3]),
    "shape negative": _with(shape=[-2, -3]),
    "shape floats": _with(shape=[2.0, 3.0]),
    "shape three long": _with(shape=[1, 2, 3]),
    "shape astronomic": _with(shape=[10**30, 3]),
    "data one byte short": _forged(json.dumps(_parts(GOOD)[0]).encode(), _parts(GOOD)[1][:-1]),
    "data one byte long": _forged(json.dumps(_parts(GOOD)[0]).encode(), _parts(GOOD)[1] + b"\0"),
    "stats a list": _with(stats=[1, 2]),
    "stats mean a string": _with(stats=_parts(GOOD)[0]["stats"] | {"mean": "x"}),
    "stats mean NaN": _with(stats=_parts(GOOD)[0]["stats"] | {"mean": float("nan")}),
    "stats stddev a list": _with(stats=_parts(GOOD)[0]["stats"] | {"stddev": [1]}),
    "stats n a float": _with(stats=_parts(GOOD)[0]["stats"] | {"n": 1.5}),
    "stats max past any float": _with(stats=_parts(GOOD)[0]["stats"] | {"max": 10**400}),
    "stats n negative": _with(stats=_parts(GOOD)[0]["stats"] | {"n": -1}),
    "meta a string": _with(meta="x"),
    "levels shape past any float": _with(levels={"v": levels.VERSION, "shape": [10**400, 1]}),
    "levels a number": _with(levels=7),
    "levels with a bad version": _with(levels={"v": -1}),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_decode_refuses_a_hostile_value_with_one_error(name):
    with pytest.raises(DecodeError):
        decode(HOSTILE[name], _key(3))


def test_the_good_value_the_hostile_ones_are_made_from_decodes():
    reduced, meta, levels = decode(GOOD, _key(3))
    assert reduced.data.tolist() == [[0, 1, 2], [3, 4, 5]] and meta == {"detector": "x"}


def test_a_hostile_value_in_the_cache_is_a_miss_and_removed(site, tier):
    key = _key(3, ino=98)
    for name in ("a JSON list", "stats mean a string", "nested past the recursion limit"):
        site.stack.cache_redis.set(tier.name(key), HOSTILE[name])
        assert tier.get(key) is None, name
        assert not site.stack.cache_redis.exists(tier.name(key)), name


def test_a_worker_that_waited_on_the_lock_takes_the_producers_value(site):
    """Two workers of one ESAF ask for the same cold entry: the second waits on the first's lock
    (held here by the admin, standing in for the producer), and once it is free it finds the
    producer's value instead of reading the file again."""
    stack = site.stack
    acl = CacheAcl(stack.cache_redis_url, 600, "pyis-admin", str(stack.cache_password_file))
    acl.start()
    esaf = 480000 + int(site.accounts.tag) % 9999
    credential = acl.credential(esaf)
    assert credential is not None
    follower = RedisTier(credential["url"], credential["prefix"], 60)
    key = _key(3, ino=97)
    lock_name = follower.name(key) + ":lock"
    admin = stack.cache_redis
    assert admin.set(lock_name, b"producer", nx=True, px=10000)
    admin.set(follower.name(key), GOOD)  # the producer stored its value, then ...
    computed: list[int] = []
    got: list[tuple] = []

    def compute():
        computed.append(1)
        return decode(GOOD, key)

    waiter = threading.Thread(target=lambda: got.append(follower.produce(key, compute, bool)))
    waiter.start()
    deadline = time.monotonic() + 10
    while not _tried_the_lock(admin, acl.user(esaf)):  # the follower is waiting on it
        assert time.monotonic() < deadline and waiter.is_alive()
        time.sleep(0.005)  # a poll step inside the deadline above
    admin.delete(lock_name)  # ... released its lock
    waiter.join(10)
    assert got and got[0][1] == "redis" and not computed, (got, computed)


def _tried_the_lock(admin, user: str) -> bool:
    return any(c.get("user") == user and c.get("cmd") == "set" for c in admin.client_list())
