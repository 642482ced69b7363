"""The training SSIM: its band-matrix blur is the valid 11-tap Gaussian correlation (the
grouped-conv2d implementation it replaced), on non-square
images too, per image and pooled."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from vtcodec.train.losses import ssim_frames

_spec = importlib.util.spec_from_file_location("ssim_speed", Path(__file__).parents[1] / "benchmarks" / "ssim_speed.py")
ssim_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ssim_speed)  # its grouped-conv2d SSIM is the reference here


@pytest.mark.parametrize("h,w", [(23, 40), (40, 23), (11, 11), (64, 17)])
def test_ssim_matches_the_convolution_it_replaced(h, w):
    g = torch.Generator().manual_seed(h * w)
    a = torch.rand(3, 3, h, w, generator=g)
    a[:, :, :, : w // 2] *= torch.linspace(0, 1, h)[:, None]  # structure that differs along H and W
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    ref = ssim_speed.grouped_conv_ssim_map(a, b)
    assert ssim_frames(a, b).item() == pytest.approx(ref.mean().item(), abs=1e-6)
    per = ssim_frames(a, b, per_image=True)
    assert per.shape == (3,) and torch.allclose(per, ref.flatten(1).mean(1), atol=1e-6)
    assert torch.allclose(per, torch.stack([ssim_frames(a[i:i + 1], b[i:i + 1]) for i in range(3)]), atol=1e-6)


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_frames(torch.rand(1, 3, 10, 40), torch.rand(1, 3, 10, 40))
