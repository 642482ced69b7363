"""Add golden .vtk files for the shipped checkpoints in models/ (one per key and checkpoint hash).

    VTCODEC_REGEN_GOLDEN=1 python tests/golden/make_shipped_golden.py

Run it whenever a checkpoint ships or the container or packed-token version changes. Files are
named `<key>-<sha256[:12]>-v<container version>p<packing version>.vtk` (`<key>-<sha256[:12]>.vtk`
for container version 2 and packing version 1, written before the suffix existed) and are only ever added, never replaced: each pins that a .vtk
written by that release's checkpoint with that packing keeps decoding (a replaced checkpoint
moves to models/superseded/, see registry.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHIPPED = HERE / "shipped"
SOURCE = HERE / "codec" / "source.mkv"  # 12 frames of 72x40, written by make_codec_golden.py


def golden_name(key: str, sha256: str) -> Path:
    """Today's golden file for a checkpoint: named by its key, hash and the versions written."""
    from vtcodec.container import FORMAT_VERSION
    from vtcodec.packing import PACKING_VERSION

    return SHIPPED / f"{key}-{sha256[:12]}-v{FORMAT_VERSION}p{PACKING_VERSION}.vtk"


def main() -> None:
    if os.environ.get("VTCODEC_REGEN_GOLDEN") != "1":
        sys.exit("refusing: set VTCODEC_REGEN_GOLDEN=1 to add golden files on purpose")
    import vtcodec
    from vtcodec.models.registry import PACKAGE_MODELS, list_models

    SHIPPED.mkdir(exist_ok=True)
    for m in list_models():
        if m.path.parent != PACKAGE_MODELS:
            continue
        out = golden_name(m.key, m.sha256)
        if out.exists():
            continue
        vtcodec.encode_file(SOURCE, out, model=m.key)
        np.savez_compressed(out.with_suffix(".npz"), frames=vtcodec.decode_frames(out))
        print(f"wrote {out.name}")


if __name__ == "__main__":
    main()
