"""SSIM through the codec by position in the clip: which frames lose it (round 14).

    python benchmarks/frame_ssim.py out/val_photos vidtok tivtok reftok [--group 4]

Each clip of the folder (cut and sized as `rd_sweep.py` does) is coded and decoded with each
model; per-frame SSIM (BT.601 luma, as `vtcodec bench`) is averaged over the clips and printed per
group of `--group` frames. A model whose loss grows with the distance from its reference (a key
frame, a chunk start) shows it here; one that loses evenly does not.
"""

from __future__ import annotations

import argparse

import numpy as np

from vtcodec.bench.clipset import ClipSet
from vtcodec.bench.metrics import ssim_frames


def group_means(per_clip: list[np.ndarray], group: int) -> np.ndarray:
    """Per-frame scores of several clips -> their mean per group of `group` frames, over the
    frames every clip has (whole groups only)."""
    n = min(len(s) for s in per_clip) // group * group
    if n == 0:
        raise SystemExit(f"clips shorter than one group of {group} frames")
    return np.mean([s[:n] for s in per_clip], axis=0).reshape(-1, group).mean(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("models", nargs="+", help="keys or .safetensors paths")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--group", type=int, default=4)
    a = ap.parse_args()
    with ClipSet(a.folder, a.frames, a.size) as cs:
        for name in a.models:
            per_clip = [ssim_frames(c.ref, c.frames) for c in cs.coded(name)]
            mean = group_means(per_clip, a.group)
            print(f"{name}: SSIM by {a.group}-frame group over {len(per_clip)} clips: " + " ".join(f"{x:.3f}" for x in mean))


if __name__ == "__main__":
    main()
