"""How good a picture the intra (RefTok) / TIV (TivTok) image is on its own: each clip's first frame
coded by the intra tokenizer alone, as the codec codes a segment's first chunk (frame 0, with the
chunk's 16 frames as context), decoded, scored against the frame.

    python benchmarks/intra_fidelity.py out/val_photos tivtok reftok

Round 11 (out/r11/intra_fidelity_*.txt): training on the codec's loop makes it less of a picture
while the chunks built on it get better. On the held-out photographs round 9's RefTok image
scores 17.0 dB / 0.439 and round 11's (57,000 more clips on the loop) 14.5 dB / 0.394, though
round 11's chunks are better at fewer bits; on the validation videos 21.0 and 19.9 dB. So it
serves as a reference feature map more than as an image, and its fidelity alone does not say
what limits the chunks.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from vtcodec.bench.clipset import ClipSet
from vtcodec.bench.metrics import psnr_rgb, ssim
from vtcodec.codec import load_tokenizer
from vtcodec.tiling import TileLayout, frames_to_video, video_to_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("models", nargs="+", help="keys or .safetensors paths of reftok / tivtok2 checkpoints")
    a = ap.parse_args()
    with ClipSet(a.folder) as cs, torch.no_grad():
        for name in a.models:
            m = load_tokenizer(name, "cpu")
            if not hasattr(m, "intra"):
                raise SystemExit(f"{name}: {m.arch} has no intra tokenizer")
            t, f = m.tile, m.chunk_frames
            rows = []
            for clip, _, ref in cs.clips:
                layout = TileLayout(ref.shape[1], ref.shape[2], t, 0)  # the codec's tiles, edge to edge
                chunk = layout.split(frames_to_video(ref[:f], f))  # (N, 3, T, t, t) in [-1, 1]
                rec = m.key_image(m.quant(m.key_latents(chunk)))  # the codec's key image, unrefined
                out = video_to_frames(layout.merge(rec[:, :, None]), 1)
                rows.append((psnr_rgb(ref[:1], out), ssim(ref[:1], out)))
                print(f"  {clip}: intra PSNR {rows[-1][0]:.2f} dB  SSIM {rows[-1][1]:.4f}")
            p, s = np.mean(rows, 0)
            print(f"{name}: {len(rows)} clips, intra image alone: PSNR {p:.2f} dB  SSIM {s:.4f}")


if __name__ == "__main__":
    main()
