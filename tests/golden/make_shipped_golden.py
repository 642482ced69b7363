"""Add golden .vtk files for the shipped checkpoints in models/ (one per key and checkpoint hash).

    VTCODEC_REGEN_GOLDEN=1 python tests/golden/make_shipped_golden.py

Run it whenever a checkpoint ships. Files are named `<key>-<sha256[:12]>.vtk` and are only ever
added, never replaced: each pins that a .vtk written by that release's checkpoint keeps decoding
(the replaced checkpoint moves to models/superseded/, see registry.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHIPPED = HERE / "shipped"
SOURCE = HERE / "codec" / "source.mkv"  # 12 frames of 72x40, written by make_codec_golden.py


def main() -> None:
    if os.environ.get("VTCODEC_REGEN_GOLDEN") != "1":
        sys.exit("refusing: set VTCODEC_REGEN_GOLDEN=1 to add golden files on purpose")
    import vtcodec
    from vtcodec.models.registry import REPO_MODELS, list_models

    SHIPPED.mkdir(exist_ok=True)
    for m in list_models():
        if m.path.parent != REPO_MODELS:
            continue
        out = SHIPPED / f"{m.key}-{m.sha256[:12]}.vtk"
        if out.exists():
            continue
        vtcodec.encode_file(SOURCE, out, model=m.key)
        np.savez_compressed(out.with_suffix(".npz"), frames=vtcodec.decode_frames(out))
        print(f"wrote {out.name}")


if __name__ == "__main__":
    main()
