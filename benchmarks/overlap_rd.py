"""What the tile overlap costs and buys: bits, PSNR and SSIM per overlap on a folder of clips.

    python benchmarks/overlap_rd.py out/val vidtok 16 0 [--frames 32] [--size 256] [--refresh-db 1.0]

Each clip is cut to its first `--frames` frames and centre-cropped/resized to size x size as
`vtcodec bench --size` does, then coded through the real path (.vtk sizes, decoded frames) once
per overlap; the means over clips are printed. At 256x256 with 128-px tiles an overlap of 16
needs 9 tiles and an overlap of 0 needs 4.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import vtcodec
from vtcodec.bench.metrics import psnr_rgb, ssim
from vtcodec.bench.prepare import fit_size, load_clip, write_lossless
from vtcodec.train.data import VIDEO_EXT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("model")
    ap.add_argument("overlaps", type=int, nargs="+")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--refresh-db", type=float, default=1.0, help="the codec's per-tile refresh threshold (inf: never)")
    a = ap.parse_args()
    tok = vtcodec.load_tokenizer(a.model)
    clips = sorted(p for p in Path(a.folder).iterdir() if p.suffix.lower() in VIDEO_EXT)
    with tempfile.TemporaryDirectory() as tmp:
        sources = []
        for c in clips:
            frames, info = load_clip(c, a.frames)
            path = Path(tmp) / f"{c.stem}.mkv"
            ref, _ = write_lossless(fit_size(frames, a.size, a.size), path, info.fps)
            sources.append((path, ref))
        for overlap in a.overlaps:
            rows = []
            for path, ref in sources:
                r = vtcodec.encode_file(path, Path(tmp) / "o.vtk", model=tok, overlap=overlap, force=True,
                                        refresh_db=a.refresh_db)
                dec = vtcodec.decode_frames(Path(tmp) / "o.vtk", model=tok)
                rows.append((r.bpp, psnr_rgb(ref, dec), ssim(ref, dec)))
            bpp, p, s = np.mean(rows, axis=0)
            print(f"{a.model} overlap {overlap} refresh_db {a.refresh_db:g}: {len(rows)} clips, bpp {bpp:.5f}  "
                  f"PSNR {p:.2f} dB  SSIM {s:.4f}")


if __name__ == "__main__":
    main()
