"""Writes tests/golden/v1_minimal.vtk, the frozen example of .vtk format version 1.

The file is committed and tests/test_container.py pins what it decodes to, so a change to the
writer that alters the format shows up as a failing test instead of as old files that no longer
open. Regenerate only on purpose (a new format version gets a new golden file, this one stays):

    VTCODEC_REGEN_GOLDEN=1 .venv/bin/python tests/golden/make_golden.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))

from vtcodec.container import SEGMENT, SHARED, TOKENS, VtkWriter  # noqa: E402
from vtcodec.packing import pack_streams  # noqa: E402

GOLDEN = HERE / "v1_minimal.vtk"
LEVELS = [8, 5, 5, 5]
HEADER = {
    "model": "golden-fsq",
    "checkpoint_sha256": "7f1c3a9e5b2d4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8",
    "width": 60,
    "height": 44,
    "pad": [0, 0, 64, 48],
    "fps": "30000/1001",
    "frame_count": 10,
    "chunk_frames": 4,
    "levels": LEVELS,
    "tool": "vtcodec golden",
}


def tokens(seed: int, shape=(1, 2, 3)) -> np.ndarray:
    return (np.arange(np.prod(shape)).reshape(shape) * 997 + seed * 131) % 1000


def write(path: Path) -> None:
    with VtkWriter(path, HEADER, force=True) as w:
        w.begin_chunk(0, 0, 4, True)
        w.write_unit(SEGMENT, b'{"segment":0}')
        w.write_unit(SHARED, pack_streams({"ref": (tokens(1), LEVELS)}))
        w.write_unit(TOKENS, pack_streams({"tok": (tokens(2), LEVELS)}))
        w.begin_chunk(1, 4, 4, False)
        w.write_unit(TOKENS, pack_streams({"tok": (tokens(3), LEVELS)}))
        w.begin_chunk(2, 8, 2, True)
        w.write_unit(SEGMENT, b'{"segment":1}')
        w.write_unit(TOKENS, pack_streams({"tok": (tokens(4, (1, 2, 2)), LEVELS)}))


if __name__ == "__main__":
    if os.environ.get("VTCODEC_REGEN_GOLDEN") != "1":
        sys.exit("refusing to overwrite the golden file: set VTCODEC_REGEN_GOLDEN=1 to regenerate it")
    write(GOLDEN)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")
