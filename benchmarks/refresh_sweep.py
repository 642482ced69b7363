"""The refresh threshold against bits and PSNR: each clip of VAL_DIR at each `--refresh-db` and quality.

    python benchmarks/refresh_sweep.py VAL_DIR [--model tivtok] [--refresh 0.25,0.5,1,2,4,inf] [--quality 0,1,2]

Prints, per clip and threshold, (bpp, RGB PSNR, key chunks) at each quality, through the real codec
(bits from the .vtk size). Compare thresholds at equal bits on these curves (docs/RESEARCH.md).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from vtcodec.bench.metrics import psnr_rgb
from vtcodec.codec import decode_frames, encode_file
from vtcodec.video import read_frames


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("val_dir", type=Path)
    ap.add_argument("--model", default="tivtok")
    ap.add_argument("--refresh", default="0.25,0.5,1,2,4,inf")
    ap.add_argument("--quality", default="0,1,2")
    a = ap.parse_args(argv)
    thresholds = [float(x) for x in a.refresh.split(",")]
    qualities = [int(x) for x in a.quality.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.vtk"
        for src in sorted(p for p in a.val_dir.iterdir() if p.suffix in (".mkv", ".mp4")):
            frames = read_frames(src)
            for rdb in thresholds:
                cells = []
                for q in qualities:
                    r = encode_file(src, out, model=a.model, quality=q, refresh_db=rdb, force=True)
                    cells.append(f"q{q} {r.bpp:.5f} {psnr_rgb(frames, decode_frames(out)):.2f} dB {r.key_chunks} key")
                print(f"{src.stem:<20} refresh {rdb:<5g} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
