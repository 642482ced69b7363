"""TivTok cross-chunk reuse: bits and PSNR with every chunk coded independently vs TIV reuse.

    python benchmarks/tivtok_reuse.py out/val/vtest_val.mkv [--model tivtok] [--frames 112] [--crop 256]
        [--refresh-db 1.0 ...] [--segment 4 ...]

Static-camera footage is where reuse should pay: the same time-invariant tokens serve every chunk
of the segment. RD refresh restarts the tiles where restarting beats reusing by more than the
threshold (per tile since .vtk format version 2). Every run goes through the real path (.vtk file
sizes, decoded frames).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import vtcodec
from vtcodec.bench.metrics import psnr_rgb, ssim
from vtcodec.video import VideoWriter, probe, read_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video")
    ap.add_argument("--model", default="tivtok")
    ap.add_argument("--frames", type=int, default=112)
    ap.add_argument("--crop", type=int, default=256, help="center crop (0: full frame)")
    ap.add_argument("--refresh-db", type=float, nargs="*", default=[1.0], help="RD refresh thresholds to try")
    ap.add_argument("--segment", type=int, nargs="*", default=[4], help="fixed segment lengths (chunks) to try, RD refresh off")
    a = ap.parse_args()
    frames = read_frames(a.video)[: a.frames]
    if a.crop:
        h, w = frames.shape[1:3]
        y, x = max(0, (h - a.crop) // 2), max(0, (w - a.crop) // 2)
        frames = frames[:, y:y + a.crop, x:x + a.crop]
    tok = vtcodec.load_tokenizer(a.model)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.mkv"
        with VideoWriter(src, frames.shape[2], frames.shape[1], probe(a.video).fps, lossless=True) as w:
            w.write(frames)
        ref = read_frames(src)
        rows = []
        for label, kw in [("independent (every chunk key)", dict(segment_chunks=1, refresh_db=None)),
                          ("reuse (one segment, refresh off)", dict(segment_chunks=10**6, refresh_db=None))] + [
                          (f"reuse + RD refresh at {x:g} dB", dict(segment_chunks=10**6, refresh_db=x)) for x in a.refresh_db] + [
                          (f"reuse, a key chunk every {n}", dict(segment_chunks=n, refresh_db=None)) for n in a.segment]:
            r = vtcodec.encode_file(src, Path(tmp) / "o.vtk", model=tok, force=True, **kw)
            dec = vtcodec.decode_frames(Path(tmp) / "o.vtk", model=tok)
            rows.append((label, r.bpp, psnr_rgb(ref, dec), ssim(ref, dec), r.key_chunks, r.chunks, r.tile_refreshes))
    print(f"{a.video}: {len(ref)} frames {ref.shape[2]}x{ref.shape[1]}, model {a.model}")
    for label, bpp, p, s, k, n, t in rows:
        print(f"{label:<36} bpp {bpp:.5f}  PSNR {p:6.2f} dB  SSIM {s:.4f}  key chunks {k}/{n}  tiles refreshed {t}")
    base = rows[0]
    for label, bpp, p, *_ in rows[1:]:
        print(f"{label}: {base[1] / bpp:.2f}x fewer bits, {p - base[2]:+.2f} dB")


if __name__ == "__main__":
    main()
