"""Regenerate the codec golden files: tiny checkpoints, a source clip, .vtk files and decoded frames.

    VTCODEC_REGEN_GOLDEN=1 python tests/golden/make_codec_golden.py

Only on purpose: these files pin what a version-1 decoder must produce from today's bitstreams.
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def source_frames() -> np.ndarray:
    """12 frames of 72x40 (odd chunking: 8 + 4; wider than one 64 tile): gradient + moving square."""
    yy, xx = np.mgrid[0:40, 0:72]
    frames = []
    for t in range(12):
        f = np.stack([(xx * 3 + t * 5) % 256, (yy * 5) % 256, ((xx + yy) * 2) % 256], -1).astype(np.uint8)
        f[10:20, 5 + 4 * t:15 + 4 * t] = (250, 30, 30)
        frames.append(f)
    return np.stack(frames)


def main() -> None:
    if os.environ.get("VTCODEC_REGEN_GOLDEN") != "1":
        sys.exit("refusing: set VTCODEC_REGEN_GOLDEN=1 to regenerate the golden files on purpose")
    from conftest import ARCHS, save_tiny

    import vtcodec
    from vtcodec.video import VideoWriter

    d = HERE / "codec"
    d.mkdir(exist_ok=True)
    os.environ["VTCODEC_MODELS"] = str(d)
    src = d / "source.mkv"
    with VideoWriter(src, 72, 40, Fraction(25), lossless=True, force=True) as w:
        w.write(source_frames())
    for arch in ARCHS:
        save_tiny(arch, d / f"{arch}.safetensors")
        vtcodec.encode_file(src, d / f"{arch}.vtk", model=arch, force=True, segment_chunks=1)
        np.save(d / f"{arch}_decoded.npy", vtcodec.decode_frames(d / f"{arch}.vtk"))
    print(f"wrote {sorted(p.name for p in d.iterdir())}")


if __name__ == "__main__":
    main()
