"""Names of frames in the shared test data that several test files read."""

from __future__ import annotations

# one frame of each format fabio reads for us (besides CBF, MarCCD, Eiger and DICOM)
FABIO_FORMATS = (
    "mar345/example.mar2300",
    "smv/TIMEPIX_SU_512-stdgoni_0001.img",
    "other/CeO2_Pilatus1M.tif",
    "other/Cr8F8140k103.0026",
    "other/i01f0001.kcd",
    "other/b191_1_9_1.img",
    "other/F2K_Seb_Lyso0675.edf",
)
