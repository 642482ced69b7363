"""The training SSIM: its band-matrix blur is the valid 11-tap Gaussian correlation (the
grouped-conv2d implementation it replaced), on non-square
images too, per image and pooled."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vtcodec.bench.metrics import gaussian_window
from vtcodec.train.losses import ssim_frames


def grouped_conv_ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The reference: the SSIM map with the blur as two grouped 11-tap conv2d."""
    c = a.shape[1]
    g = gaussian_window(11, 1.5).to(device=a.device, dtype=torch.float32)
    kx, ky = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(x):
        return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    s_aa, s_bb, s_ab = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))


@pytest.mark.parametrize("h,w", [(23, 40), (40, 23), (11, 11), (64, 17)])
def test_ssim_matches_the_convolution_it_replaced(h, w):
    g = torch.Generator().manual_seed(h * w)
    a = torch.rand(3, 3, h, w, generator=g)
    a[:, :, :, : w // 2] *= torch.linspace(0, 1, h)[:, None]  # structure that differs along H and W
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    ref = grouped_conv_ssim_map(a, b)
    assert ssim_frames(a, b).item() == pytest.approx(ref.mean().item(), abs=1e-6)
    per = ssim_frames(a, b, per_image=True)
    assert per.shape == (3,) and torch.allclose(per, ref.flatten(1).mean(1), atol=1e-6)
    assert torch.allclose(per, torch.stack([ssim_frames(a[i:i + 1], b[i:i + 1]) for i in range(3)]), atol=1e-6)


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_frames(torch.rand(1, 3, 10, 40), torch.rand(1, 3, 10, 40))
