"""The training SSIM's speed: `vtcodec.train.losses.ssim_frames` (a band-matrix Gaussian blur)
against the grouped-conv2d blur it replaced in round 9, forward and forward + backward.

    python benchmarks/ssim_speed.py [--threads 1] [--repeat 3]

Sizes: 16 and 64 frames of 3x128x128 (one and four tile-chunks of 16 frames at the training
size), and 16 frames of 256x256. Prints the best of `--repeat` runs of each, in ms, and the
ratio. `grouped_conv_ssim_map` is also the reference tests/test_losses.py checks against.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from vtcodec.bench.metrics import gaussian_window
from vtcodec.train.losses import ssim_frames


def grouped_conv_ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The SSIM map with the blur as two grouped 11-tap conv2d (the implementation before round 9)."""
    c = a.shape[1]
    g = gaussian_window(11, 1.5).to(device=a.device, dtype=torch.float32)
    kx, ky = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(x):
        return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    s_aa, s_bb, s_ab = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))


def _best_ms(fn, a, b, backward: bool, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat + 1):  # the first is a warm-up
        x = a.clone().requires_grad_(backward)
        t0 = time.perf_counter()
        s = fn(x, b)
        if backward:
            s.backward()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    for n, side in ((16, 128), (64, 128), (16, 256)):
        x = torch.rand(n, 3, side, side, generator=g)
        y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        for backward in (False, True):
            new = _best_ms(lambda p, q: ssim_frames(p, q), x, y, backward, a.repeat)
            old = _best_ms(lambda p, q: grouped_conv_ssim_map(p, q).mean(), x, y, backward, a.repeat)
            what = "forward+backward" if backward else "forward"
            print(f"{n:3d}x3x{side}x{side} {what:16s} band matrices {new:8.1f} ms  grouped conv2d {old:8.1f} ms  "
                  f"{old / new:4.1f}x")


if __name__ == "__main__":
    main()
