"""Regenerate the codec golden files: tiny checkpoints, a source clip, .vtk files and decoded frames.

    VTCODEC_REGEN_GOLDEN=1 python tests/golden/make_codec_golden.py

Only on purpose: these files pin what a decoder must produce from bitstreams written before.
The script only adds files that are missing: `{arch}.vtk` are format version 1 (written before
version 2 existed, so today's writer could not remake them), `{arch}_v2_refresh.vtk` are version 2
with a partial refresh (tile 0 restarted in chunk 1, forced by a stand-in for the encoder's
per-tile error measure so the file does not depend on the tiny models' numbers). An arch added
later (tivtok2) gets both files in the format version of its day (3), names unchanged.
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
    from vtcodec import codec

    if not src.exists():
        with VideoWriter(src, 72, 40, Fraction(25), lossless=True) as w:
            w.write(source_frames())
    wrote = []
    for arch in ARCHS:
        if not (d / f"{arch}.safetensors").exists():
            save_tiny(arch, d / f"{arch}.safetensors")
        if not (d / f"{arch}.vtk").exists():
            vtcodec.encode_file(src, d / f"{arch}.vtk", model=arch, segment_chunks=1, overlap=16)
            np.save(d / f"{arch}_decoded.npy", vtcodec.decode_frames(d / f"{arch}.vtk"))
            wrote.append(f"{arch}.vtk")
        if not (d / f"{arch}_v2_refresh.vtk").exists():
            calls = []

            def forced(recon, tiles):  # chunk 0's key, then chunk 1 continuing: tile 0 gains 20 dB
                calls.append(0)
                return np.array([100.0, 1.0]) if len(calls) == 2 else np.array([1.0, 1.0])

            measure, codec._tile_mse = codec._tile_mse, forced
            try:
                vtcodec.encode_file(src, d / f"{arch}_v2_refresh.vtk", model=arch, segment_chunks=8, refresh_db=1.0,
                                    overlap=16)
            finally:
                codec._tile_mse = measure
            np.save(d / f"{arch}_v2_refresh_decoded.npy", vtcodec.decode_frames(d / f"{arch}_v2_refresh.vtk"))
            wrote.append(f"{arch}_v2_refresh.vtk")
    print(f"wrote {wrote}")


if __name__ == "__main__":
    main()
