"""Tier 2 values: every dtype a reader returns round-trips through the real cache Redis, and a
value whose shape the key's request would not produce is refused (and removed)."""

from __future__ import annotations

import numpy as np
import pytest

from procmgr.cacheacl import CacheAcl
from worker.cache import Key
from worker.reduce import Reduced, stats
from worker.tier2 import DecodeError, RedisTier, decode, encode


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
