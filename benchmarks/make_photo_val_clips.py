"""Write camera-motion clips over the held-out photographs, for colour checks (`rd_sweep`, `bench --data`).

    python benchmarks/make_photo_val_clips.py media out/val_photos [--frames 32] [--size 256] [--seed 0]
    python benchmarks/make_photo_val_clips.py media out/train_photos --split train

The validation videos (`make_val_clips.py`) are mostly grey; the held-out photographs of the
split (`vtcodec.train.data.VAL_PHOTOS`, never trained on) are in colour. Each becomes one clip of
the training pipeline's synthetic camera motion (`ClipSampler.photo_motion`: pan, zoom, small
rotation, maybe a moving sprite), seeded, written losslessly.

`--split train` makes the same clips over every *training* photograph instead: a model
that beats another on those but not on the held-out ones is failing to generalise, not to fit.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import numpy as np

from vtcodec.train.data import MIN_SIDE, VAL_PHOTOS, ClipSampler, Sources
from vtcodec.video import IMAGE_EXT, VideoWriter, read_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("media")
    ap.add_argument("out")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=("val", "train"), default="val", help="the held-out photographs, or the rest")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = sorted(p for p in Path(a.media).rglob("*")
                    if p.suffix.lower() in IMAGE_EXT and (p.stem in VAL_PHOTOS) == (a.split == "val"))
    for i, p in enumerate(photos):
        im = read_image(p)
        if a.split == "train" and min(im.shape[:2]) < MIN_SIDE:  # never trained on
            continue
        sampler = ClipSampler(Sources([], [im]), a.frames, a.size, seed=a.seed + i)
        clip = sampler.photo_motion()  # (3, T, S, S) in [-1, 1]
        frames = ((clip.permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        target = out / f"{p.stem}_pan.mkv"
        with VideoWriter(target, a.size, a.size, Fraction(25), lossless=True, force=True) as w:
            w.write(frames)
        rg = np.abs(frames[..., 0].astype(int) - frames[..., 1]).mean() / 127.5
        print(f"{target}: {len(frames)} frames {a.size}x{a.size}, mean |R-G| {rg:.3f} (in [-1, 1] units)")


if __name__ == "__main__":
    main()
