"""Reconstruction losses that need no downloaded weights: L1 + SSIM, and PSNR for reporting.

Perceptual nets (LPIPS, ...) are unobtainable offline; SSIM supplies the structural term.
Inputs are float video (B, 3, T, H, W) in [-1, 1].
"""

from __future__ import annotations

import torch

from vtcodec.bench.metrics import gaussian_window, psnr_rgb
from vtcodec.tiling import video_to_frames


def ssim_frames(a: torch.Tensor, b: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """Mean SSIM over frames and channels of (N, C, H, W) images in [0, 1] (with per_image, the
    (N,) mean of each image); differentiable.

    Always float32, autocast or not: the variances are differences of blurred squares, and in bf16
    they cancel to zero or below, so SSIM turned infinite and the first bf16 run (AMX CPU) went to
    NaN at step 13."""
    with torch.autocast(a.device.type, enabled=False):
        m = _ssim_map(a.float(), b.float())
    return m.flatten(1).mean(1) if per_image else m.mean()


def _band(n: int, g: torch.Tensor) -> torch.Tensor:
    """(n, n - k + 1) matrix whose product with a length-n signal is its valid correlation with g."""
    k = g.numel()
    offset = torch.arange(n, device=g.device)[:, None] - torch.arange(n - k + 1, device=g.device)[None]
    inside = (offset >= 0) & (offset < k)
    return torch.where(inside, g[offset.clamp(0, k - 1)], torch.zeros((), device=g.device, dtype=g.dtype))


def _ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    g = gaussian_window(11, 1.5).to(device=a.device, dtype=torch.float32)
    if min(a.shape[-2:]) < g.numel():
        raise ValueError(f"SSIM needs images of at least {g.numel()}x{g.numel()} pixels, got {tuple(a.shape[-2:])}")
    bw, bh = _band(a.shape[-1], g), _band(a.shape[-2], g)

    def blur(x):  # the separable Gaussian as two matrix products: 2-3.7x faster than a grouped
        return bh.T @ (x @ bw)  # conv2d on a 2-core Xeon, forward and backward

    mu_a, mu_b = blur(a), blur(b)
    s_aa = blur(a * a) - mu_a**2
    s_bb = blur(b * b) - mu_b**2
    s_ab = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))


def frames01(video: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = video.shape
    return (video.float().transpose(1, 2).reshape(b * t, c, h, w) + 1) / 2


def recon_loss(recon: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.25) -> tuple[torch.Tensor, dict]:
    recon, target = recon.float(), target.float()
    l1 = (recon - target).abs().mean()
    s = ssim_frames(frames01(recon), frames01(target))
    return l1 + ssim_weight * (1 - s), {"l1": l1.item(), "ssim": s.item()}


def psnr(recon: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of 8-bit-rounded (B, 3, T, H, W) videos: the bench's pooled-MSE PSNR."""
    def frames(v: torch.Tensor):
        v = v.detach().cpu().transpose(0, 1).flatten(1, 2)  # (3, B*T, H, W)
        return video_to_frames(v, v.shape[1])
    return psnr_rgb(frames(target), frames(recon))
