"""Finite Scalar Quantization (Mentzer et al. 2023): the quantizer every shipped vtcodec model uses.

Each latent channel i is bounded to `levels[i]` values and rounded; a code is one point of the
grid, and its index is the mixed-radix number formed by the per-channel digits. There is no
codebook to learn or collapse, which matters when a model trains for an hour on two CPU cores.

Every shipped model uses FSQ with levels 8,8,8,5,5,5 (64,000 codes, 15.97 bits per token), not
VQ: there is no codebook to collapse or tune, which matters in hour-long CPU training runs.

Math is fp32 even under autocast: rounding a bf16 value at a level boundary would make encoder
and decoder disagree about which code was meant.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round with a straight-through gradient."""
    return x + (x.round() - x).detach()


class FSQ(nn.Module):
    """Quantize the last dimension (len(levels) channels) to a fixed grid.

    `codes` are floats in [-1, 1] (the grid, normalised); `indices` are int64 in [0, prod(levels)).
    """

    def __init__(self, levels: tuple[int, ...] | list[int], eps: float = 1e-3):
        super().__init__()
        levels = [int(n) for n in levels]
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must all be >= 2, got {levels}")
        self.levels = levels
        self.eps = eps
        basis = [1]
        for n in levels[:-1]:
            basis.append(basis[-1] * n)
        # Derived tables, not learned: non-persistent so checkpoints hold only weights.
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.float32), persistent=False)
        self.register_buffer("_basis", torch.tensor(basis, dtype=torch.int64), persistent=False)

    @property
    def dim(self) -> int:
        return len(self.levels)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def bits_per_token(self) -> float:
        return math.log2(self.codebook_size)

    def _half_offset(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (self._levels - 1) * (1 + self.eps) / 2, torch.where(self._levels % 2 == 0, 0.5, 0.0)

    def pre_bound(self, z: torch.Tensor) -> torch.Tensor:
        """The argument of `bound`'s tanh: where |pre_bound(z)| is large the channel is saturated,
        its gradient (the tanh's slope) is zero, and no loss can move it (vtcodec.train.revive)."""
        half_l, offset = self._half_offset()
        return z + torch.atanh(offset / half_l)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash z so that rounding yields exactly `levels` values per channel (even counts included)."""
        half_l, offset = self._half_offset()
        return torch.tanh(self.pre_bound(z)) * half_l - offset

    def soft_digits(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., dim) -> each channel's digit before rounding, a float in about [0, L - 1]
        (differentiable); rounded, it is the digit `codes_to_indices` combines."""
        return self.bound(z.float()) + self._levels // 2

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., dim) -> quantized codes (..., dim) in [-1, 1], straight-through gradients."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            q = _round_ste(self.bound(z.float()))
            return q / (self._levels // 2)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        half_w = self._levels // 2
        digits = (codes.float() * half_w + half_w).round().long()  # (..., dim) in [0, L)
        return (digits * self._basis).sum(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        indices = indices.long().unsqueeze(-1)
        digits = (indices // self._basis) % self._levels.long()
        half_w = self._levels // 2
        return (digits.float() - half_w) / half_w

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z -> (codes, indices)."""
        codes = self(z)
        return codes, self.codes_to_indices(codes)
