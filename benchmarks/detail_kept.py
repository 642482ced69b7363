"""How much fine detail a model's output keeps, and whether its patch grid shows (round 11).

    python benchmarks/detail_kept.py out/val_photos tivtok reftok vidtok

Each clip of the folder goes through the codec (as rd_sweep.py / bench: 32 frames, 256x256). On
BT.601 luma:
- detail energy kept: the RMS of the output's 8x8 blocks with their means removed, over the same
  in the source (1.0: as much detail as the source; a blur is far below);
- detail correlation: the correlation of those mean-removed blocks with the source's (how much of
  the detail is the right detail);
- grid ratio at P: the mean |horizontal difference| across columns kP-1 | kP over that inside
  P-px patches, relative to the same in the source (1.0: no visible P-px grid).
Means over clips.
"""

from __future__ import annotations

import argparse

import numpy as np

from vtcodec.bench.clipset import ClipSet
from vtcodec.bench.metrics import luma


def detail(x: np.ndarray, b: int = 8) -> np.ndarray:
    """(T, H, W) -> the b x b blocks with their means removed."""
    t, h, w = x.shape
    x = x[:, : h // b * b, : w // b * b].reshape(t, h // b, b, w // b, b)
    return x - x.mean((2, 4), keepdims=True)


def grid_ratio(x: np.ndarray, p: int) -> float:
    d = np.abs(np.diff(x, axis=2)).mean((0, 1))
    edge = np.arange(d.size) % p == p - 1
    return float(d[edge].mean() / d[~edge].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    with ClipSet(a.folder) as cs:
        for key in a.models:
            rows = []
            for c in cs.coded(key):
                out, r = luma(c.frames), luma(c.ref)
                do, dr = detail(out), detail(r)
                rows.append((np.sqrt((do ** 2).mean() / (dr ** 2).mean()),
                             (do * dr).sum() / np.sqrt((do ** 2).sum() * (dr ** 2).sum()),
                             grid_ratio(out, 8) / grid_ratio(r, 8), grid_ratio(out, 16) / grid_ratio(r, 16)))
            e, c, g8, g16 = np.mean(rows, 0)
            print(f"{key}: detail energy kept {e:.2f}, detail correlation {c:.3f}, grid ratio {g8:.2f} at 8 px, {g16:.2f} at 16 px")


if __name__ == "__main__":
    main()
