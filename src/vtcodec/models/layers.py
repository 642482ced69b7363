"""Layers shared by the tokenizers: attention blocks, positional tables, patching and the pixel head.

Every model imports from here; nothing here is copied into a model file.
Layout names: `video` is float (B, C, T, H, W) in [-1, 1]; token sequences are (B, N, D).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sincos_table(n: int, dim: int) -> torch.Tensor:
    """Fixed 1D sin/cos positional table (n, dim)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """(h*w, dim): half the channels encode the row, half the column."""
    row = sincos_table(h, dim // 2)[:, None, :].expand(h, w, dim // 2)
    col = sincos_table(w, dim // 2)[None, :, :].expand(h, w, dim // 2)
    return torch.cat([row, col], dim=-1).reshape(h * w, dim)


class Attention(nn.Module):
    """Multi-head attention; self-attention when `context` is None. `mask` is bool, True = may attend."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        b, n, d = x.shape
        context = x if context is None else context
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)  # (B, nh, N, hs)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, optional cross-attention to a context, MLP."""

    def __init__(self, dim: int, heads: int, cross: bool = False, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.cross = Attention(dim, heads) if cross else None
        self.norm_c = nn.LayerNorm(dim) if cross else None
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x, mask=None, context=None, group: int = 1):
        """`group` > 1: x is (B*group, N, D) while context is (B, M, D); cross-attention sees the
        group's queries as one sequence, so the context is computed once and broadcast."""
        x = x + self.attn(self.norm1(x), mask=mask)
        if self.cross is not None:
            bg, n, d = x.shape
            q = self.norm_c(x).reshape(bg // group, group * n, d)
            x = x + self.cross(q, context=context).reshape(bg, n, d)
        return x + self.mlp(self.norm2(x))


def patchify(video: torch.Tensor, pt: int, p: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, T/pt * H/p * W/p, C*pt*p*p), tubelets in (t, h, w) raster order."""
    b, c, t, h, w = video.shape
    x = video.reshape(b, c, t // pt, pt, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, t', h', w', C, pt, p, p)
    return x.reshape(b, (t // pt) * (h // p) * (w // p), c * pt * p * p)


class PixelHead(nn.Module):
    """Patch features -> pixels with convolutions across patch borders.

    A linear un-patchify leaves hard block edges at 1024 px/token (measured on this project's first
    probe); this head un-patchifies to a quarter-resolution feature map and refines it with 3x3
    convolutions at 1/4 and 1/2 resolution, so neighbouring patches blend.
    Input (B*T, h'*w', D) for one frame per batch row; output (B*T, out_ch, H, W).
    """

    def __init__(self, dim: int, patch: int, width: int = 48, out_ch: int = 3):
        super().__init__()
        if patch % 4:
            raise ValueError(f"PixelHead needs a patch size divisible by 4, got {patch}")
        self.sub = patch // 4
        self.width = width
        self.proj = nn.Linear(dim, width * self.sub * self.sub)
        self.c1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, width, 3, padding=1))
        self.up1 = nn.Conv2d(width, 4 * (width // 2), 3, padding=1)
        self.c2 = nn.Sequential(nn.GELU(), nn.Conv2d(width // 2, width // 2, 3, padding=1), nn.GELU())
        self.up2 = nn.Conv2d(width // 2, 4 * out_ch, 3, padding=1)

    def zero_channels(self, first: int) -> None:
        """Make output channels `first`.. start at exactly zero (the last conv's rows for them:
        pixel_shuffle reads output channel c from rows 4c..4c+3)."""
        with torch.no_grad():
            self.up2.weight[4 * first:].zero_()
            self.up2.bias[4 * first:].zero_()

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        n, _, _ = x.shape
        gh, gw = grid
        s, c = self.sub, self.width
        f = self.proj(x).view(n, gh, gw, c, s, s).permute(0, 3, 1, 4, 2, 5).reshape(n, c, gh * s, gw * s)
        f = f + self.c1(f)
        f = F.pixel_shuffle(self.up1(f), 2)  # (N, width/2, 2*gh*s, 2*gw*s)
        f = f + self.c2(f)
        return F.pixel_shuffle(self.up2(f), 2)  # (N, out_ch, H, W)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """`image` (B, C, H, W) sampled at each pixel plus `flow` (B, 2, T, H, W), a displacement in
    pixels (x, y), for each of T frames -> float32 (B, C, T, H, W); bilinear, edges repeated. The
    grid and the sampling are float32 even under autocast: a bf16 grid moves in steps of 1/4 px on
    a 128-px tile, which would drop the small displacements training starts from. Zero flow
    returns the image (to float32 rounding)."""
    with torch.autocast(device_type=image.device.type, enabled=False):
        image, flow = image.float(), flow.float()
        b, c, h, w = image.shape
        t = flow.shape[2]
        ys = (torch.arange(h, device=flow.device, dtype=flow.dtype) + 0.5) * (2 / h) - 1
        xs = (torch.arange(w, device=flow.device, dtype=flow.dtype) + 0.5) * (2 / w) - 1
        fx, fy = flow[:, 0] * (2 / w) + xs, flow[:, 1] * (2 / h) + ys[:, None]  # (B, T, H, W) each
        grid = torch.stack([fx, fy], dim=-1).reshape(b * t, h, w, 2)
        frames = image[:, None].expand(b, t, c, h, w).reshape(b * t, c, h, w)
        out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.view(b, t, c, h, w).transpose(1, 2)


class PostFilter(nn.Module):
    """A full-resolution detail pass after the pixel head: frames plus the frame they were decoded
    against -> the same frames with a residual added (config `post_width`; no shipped model has one).

    The transformers' pixel heads are narrow (16 channels at 1/4 resolution, 8 at 1/2, 3 at full),
    and the conv baseline keeps 30 % more 8x8 detail energy (docs/RESEARCH.md). This
    pass sees each decoded frame beside its reference (RefTok's previous frame, TivTok's TIV image)
    at full resolution, through one stride-2 stage of `2 * width` channels (2 residual blocks), so
    it can sharpen edges the head blurred and copy detail the reference holds. Its last
    convolution starts at zero: a warm start decodes exactly as the model it extends until training
    moves it. Trained alone (`--part post`), the encoder is frozen: TivTok's tokens stay as they
    were, RefTok's change only where a chunk is coded against a filtered previous frame.
    Cost: 76 * width^2 multiply-adds per pixel (19.5k at width 16), paid by the decoder and by
    RefTok's closed-loop encoder; at width 16 the codec decodes 5-7x slower on a 2-core CPU, and
    trained on the codec's loop it added at most +0.02 dB on held-out photographs (docs/RESEARCH.md).
    Input (B, 3, T, H, W) and (B, 3, H, W); output (B, 3, T, H, W).
    """

    def __init__(self, width: int = 16):
        super().__init__()
        w, w2 = width, 2 * width
        self.inp = nn.Conv2d(6, w, 3, padding=1)
        self.down = nn.Conv2d(w, w2, 4, stride=2, padding=1)
        self.mid = nn.ModuleList(nn.Sequential(nn.GELU(), nn.Conv2d(w2, w2, 3, padding=1), nn.GELU(),
                                               nn.Conv2d(w2, w2, 3, padding=1)) for _ in range(2))
        self.up = nn.Conv2d(w2, 4 * w, 3, padding=1)
        self.out = nn.Sequential(nn.GELU(), nn.Conv2d(w, w, 3, padding=1), nn.GELU(), nn.Conv2d(w, 3, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, video: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        refs = ref[:, None].expand(b, t, *ref.shape[1:]).reshape(b * t, *ref.shape[1:]).to(frames.dtype)
        f = F.gelu(self.inp(torch.cat([frames, refs], dim=1)))
        x = self.down(f)
        for blk in self.mid:
            x = x + blk(x)
        f = f + F.pixel_shuffle(self.up(F.gelu(x)), 2)
        out = frames + self.out(f)
        return out.view(b, t, c, h, w).transpose(1, 2)


def zero_linear(d_in: int, d_out: int) -> nn.Linear:
    """A Linear whose output starts at exactly zero: a path added to a trained model changes
    nothing until training moves it (a warm start begins as the model it extends)."""
    layer = nn.Linear(d_in, d_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
