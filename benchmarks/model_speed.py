"""Params, tokens per chunk, pixels per token and end-to-end encode/decode frames/s per model.

    python benchmarks/model_speed.py [--sizes 128 256] [--frames 32] [--device cpu] [--repeats 2]

Each figure goes through the real path (video file -> encode_file -> .vtk -> decode_frames),
after one warm-up run; the median of `--repeats` timed runs is printed. Installed checkpoints
(`vtcodec models`) are measured; `--random` measures default-config random-init models instead.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

import vtcodec
from vtcodec.models.registry import ARCHS, build, list_models
from vtcodec.video import VideoWriter


def synthetic(path: Path, frames: int, size: int) -> None:
    yy, xx = np.mgrid[0:size, 0:size]
    with VideoWriter(path, size, size, Fraction(25), lossless=True, force=True) as w:
        for t in range(frames):
            img = np.stack([(xx + 3 * t) % 256, (yy + 2 * t) % 256, ((xx + yy) // 2) % 256], -1).astype(np.uint8)
            w.write(img[None])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--random", action="store_true", help="random-init default configs instead of checkpoints")
    a = ap.parse_args()
    if a.random:
        models = [(arch, build(arch)) for arch in ARCHS]
        for key, m in models:
            m.key, m.sha256 = key, "0" * 64
            m.eval().to(vtcodec.codec.resolve_device(a.device))
    else:
        models = [(m.key, vtcodec.load_tokenizer(m.key, a.device)) for m in list_models()]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {a.device}")
    print(f"{'model':<12}{'params':>9}{'px/tok':>8}{'tok key/next':>14}{'size':>6}{'enc fps':>9}{'dec fps':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            src = Path(tmp) / f"in{size}.mkv"
            synthetic(src, a.frames, size)
            for key, m in models:
                d = m.describe()
                enc, dec = [], []
                for i in range(a.repeats + 1):
                    t = time.perf_counter()
                    vtcodec.encode_file(src, Path(tmp) / "o.vtk", model=m, force=True)
                    t1 = time.perf_counter()
                    vtcodec.decode_frames(Path(tmp) / "o.vtk", model=m)
                    t2 = time.perf_counter()
                    if i:  # the first run is the warm-up
                        enc.append(a.frames / (t1 - t))
                        dec.append(a.frames / (t2 - t1))
                toks = f"{sum(d['tokens_key'].values())}/{sum(d['tokens_next'].values())}"
                print(f"{key:<12}{d['params'] / 1e6:>8.2f}M{d['pixels_per_token']:>8}{toks:>14}{size:>6}"
                      f"{statistics.median(enc):>9.1f}{statistics.median(dec):>9.1f}")


if __name__ == "__main__":
    main()
