"""The ``paths`` claim in-process: what a prefix covers, and malformed lists refused when a
token is signed and again when one (from a buggy or hostile issuer) is verified."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authsign import pathclaim, tokens
from pyis_common.errors import Refused

NOW = 1_700_000_000.0
KEY = Ed25519PrivateKey.generate()
ARGS: dict[str, Any] = dict(pid="s", uid="alice", esafs=[7], aud="pyis", scope="jpeg", now=NOW)
MALFORMED = [
    ["/data/e7/run7/"],  # absolute
    ["run7/../run8/"],
    [".."],
    ["./run7/"],
    ["run7//a"],
    [""],
    [],
    "run7/",  # a string, not a list
    [7],
    ["run7/\n"],
]


def _verify(token: str):
    return tokens.verify(token, {"k1": KEY.public_key()}.get, pid="s", aud="pyis",
                         job_type="jpeg", now=NOW)  # fmt: skip


def _forged(paths: Any) -> str:
    """Correctly signed, but with a ``paths`` claim the issuer should never have made."""
    claims = {"iat": NOW, "nbf": NOW, "exp": NOW + 60, "pid": "s", "uid": "alice"}
    claims |= {"allowedESAFs": [7], "aud": "pyis", "scope": "jpeg", "paths": paths}
    return jwt.encode(claims, KEY, algorithm="EdDSA", headers={"kid": "k1"})


@pytest.mark.parametrize("paths", MALFORMED)
def test_malformed_paths_are_refused_at_signing(paths):
    with pytest.raises(ValueError, match="path"):
        tokens.issue(KEY, "k1", paths=paths, **ARGS)


@pytest.mark.parametrize("paths", [*MALFORMED, None])
def test_malformed_paths_are_refused_at_verification(paths):
    with pytest.raises(Refused) as info:
        _verify(_forged(paths))
    assert info.value.code == "unauthorized" and "malformed paths" in str(info.value)


def test_a_bound_token_carries_its_paths_kid_and_a_jti():
    access = _verify(tokens.issue(KEY, "k1", paths=["run7/", "run9/a_"], **ARGS))
    assert access.paths == ("run7/", "run9/a_") and access.kid == "k1" and len(access.jti) >= 16
    other = _verify(tokens.issue(KEY, "k1", **ARGS))
    assert other.paths is None and other.jti != access.jti


@pytest.mark.parametrize(
    ("name", "is_dir", "covered"),
    [
        ("run7/a_0001.cbf", False, True),
        ("run7/deep/x.cbf", False, True),
        ("run7", True, True),  # the folder itself, for a listing
        ("run8/a_0001.cbf", False, False),
        ("run7b/a_0001.cbf", False, False),
        ("", True, False),  # the ESAF root
        ("run9/a_0001.cbf", False, True),  # a series prefix
        ("run9/b_0001.cbf", False, False),
        ("run9/a_x/y.cbf", False, False),  # a series prefix never reaches a subfolder
    ],
)
def test_what_a_prefix_covers(name, is_dir, covered):
    assert pathclaim.covers(("run7/", "run9/a_"), name, is_dir) is covered
