"""The Pilatus CBF files the pipeline tests read most, by their test-data names."""

from __future__ import annotations

from pathlib import Path

from worker.formats import Frame, read_frame

THAU = "cbf/thau_3_2_0001.cbf"
THAU_HOT = "cbf/thau_3_2_0002.cbf"  # one pixel at 1046527, above the 115897 count cutoff
RUN2 = "cbf/run2_1_00148.cbf"


def read_thau(testdata: Path) -> Frame:
    return read_frame(str(testdata / THAU))
