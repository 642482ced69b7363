"""The README's picture: a frame of the bundled example beside its reconstruction at the default rate.

    python scripts/make_readme_figure.py [--model tivtok] [--frame 24] [--out docs/reconstruction.png]

Encodes examples/pan_astronaut.mp4 with the model's default settings (what `vtcodec encode` does),
decodes it, and writes one PNG: the original frame on the left, the decoded one on the right, each
labelled, with the file's bits per pixel in the caption. Rerun it when the shipped models change.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import vtcodec
from vtcodec.bench.metrics import psnr_rgb, ssim
from vtcodec.video import read_frames

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tivtok")
    ap.add_argument("--src", type=Path, default=ROOT / "examples" / "pan_astronaut.mp4")
    ap.add_argument("--frame", type=int, default=24)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "reconstruction.png")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        vtk = Path(tmp) / "example.vtk"
        r = vtcodec.encode_file(args.src, vtk, model=args.model, device=args.device, force=True)
        rec = vtcodec.decode_frames(vtk, device=args.device)
    ref = read_frames(args.src)
    a, b = ref[args.frame], rec[args.frame]
    h, w, _ = a.shape
    bar = 22
    canvas = np.full((h + bar, 2 * w + 8, 3), 255, np.uint8)
    canvas[bar:, :w], canvas[bar:, w + 8:] = a, b
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    draw.text((4, 5), f"original, frame {args.frame}", fill=(0, 0, 0))
    draw.text((w + 12, 5), f"{r.model}: {r.bpp:.4f} bpp, PSNR {psnr_rgb(ref, rec):.1f} dB, "
                           f"SSIM {ssim(ref, rec):.2f}", fill=(0, 0, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out, optimize=True)
    print(f"{args.out}: {img.width}x{img.height}, {args.out.stat().st_size} bytes; {r.model} {r.bpp:.5f} bpp "
          f"({r.bytes} bytes for {r.frames} frames)")


if __name__ == "__main__":
    main()
