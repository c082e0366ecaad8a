"""The ``index`` job's inputs and outputs in the ESAF home; worker/index.py runs the indexer.

The indexer sees the request's inputs only, each resolved by the no-follow walk (and within a
path-bound token's prefixes); its results go to a new folder in the same ESAF home, named in
the reply as ``results_folder`` (relative to the home) and ``results_files``. Frames the
client named reach it as ``--frame N`` / ``--frame2 N`` before ``--``, once each is known to
be in its file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyis_common.request import Request
from worker import formats, index, paths, results
from worker.outcome import Result

if TYPE_CHECKING:
    from worker.jobs import Pipeline

INDEX_RESULT = "index.json"  # the indexer's JSON result, beside what it wrote itself


def run(pipe: Pipeline, req: Request, progress: Callable[[str], None]) -> Result:
    index.require(pipe.index_settings)
    inputs = [(req.fn, req.frame_asked, "--frame")]
    if req.fn2:
        inputs.append((req.fn2, req.frame2, "--frame2"))
    files = [_real_path(pipe.home, fn, frame) for fn, frame, _ in inputs]
    options = [arg for _, frame, flag in inputs if frame for arg in (flag, str(frame))]
    stem = results.stem_of(os.path.basename(files[0]))
    with results.make(pipe.home, "index", stem) as folder:
        result = index.run(pipe.index_settings, files, progress, folder, options)
        folder.write(INDEX_RESULT, json.dumps(result, sort_keys=True).encode() + b"\n")
        written = {"results_folder": folder.name, "results_files": folder.files()}
    return Result(job={}, meta=result | written)


def _real_path(home: str, fn: str | None, frame: int | None = None) -> str:
    """For the external indexer, which opens images by name (and finds a series by its
    template): the path the no-follow walk resolved, as the kernel names the open file. A
    ``frame`` must be in that file (``not_found`` otherwise, as for a jpeg)."""
    with paths.resolve(home, fn) as src:
        if frame is not None:
            formats.read_meta(src, frame)
        return os.readlink(src.path)
