"""A window of one level of a frame's max-pyramid, with its validity and saturation.

The viewer's ``tile`` and ``pixels`` jobs cut small windows out of one frame again and again:
they read the pyramid the stage-1 cache already holds (worker/pyramid.py), so a tile or a
cursor move costs a slice of a level, not a read of the file. Level 0 is the frame itself
(masked pixels at the dtype's floor), level k the maximum of each 2^k x 2^k block.
"""

from __future__ import annotations

from worker import reduce
from worker.pyramid import Pyramid, valid_from_data


def window(pyramid: Pyramid, k: int, rows: slice, cols: slice) -> reduce.Reduced:
    """Level ``k`` cut to (rows, cols) of that level; stats are left empty (tiles take the
    frame's levels, not their own)."""
    level = pyramid.level(k)
    data = level.data[rows, cols]
    if level.valid is not None:  # the "mask" rule
        valid = level.valid[rows, cols]
    else:
        valid = valid_from_data(pyramid.rule, data)
    saturated = valid & (data >= pyramid.saturation)
    return reduce.Reduced(data=data, valid=valid, saturated=saturated, stats={})
