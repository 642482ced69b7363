"""Vector quantization with codebook splitting, RefTok's training stabiliser (optional).

Kept for experiments: the shipped models use FSQ (no codebook to collapse in short CPU runs).
Splitting: every `split_every` calls to `split_dead()`, codes used less than `min_usage` times are
replaced by a used code plus a small perturbation, so the book grows into the data instead of
leaving dead entries. Indices are plain ints in [0, size); packing sees levels [size].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VQ(nn.Module):
    def __init__(self, size: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.size, self.dim, self.beta = size, dim, beta
        self.codebook = nn.Parameter(torch.randn(size, dim) * dim**-0.5)
        self.register_buffer("usage", torch.zeros(size), persistent=False)

    @property
    def levels(self) -> list[int]:
        return [self.size]

    @property
    def codebook_size(self) -> int:
        return self.size

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        flat = codes.float().reshape(-1, self.dim)
        # the matmul form of cdist rounds small distances to zero: exact mode keeps the argmin right
        d = torch.cdist(flat, self.codebook.float(), compute_mode="donot_use_mm_for_euclid_dist")
        return d.argmin(dim=-1).reshape(codes.shape[:-1])

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices.long(), self.codebook.float())

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (..., dim) -> (codes with straight-through gradient, commitment + codebook loss)."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            idx = self.codes_to_indices(z)
            q = self.indices_to_codes(idx)
            loss = F.mse_loss(q, z.detach()) + self.beta * F.mse_loss(z, q.detach())
            if self.training:
                self.usage += torch.bincount(idx.flatten(), minlength=self.size).float()
            return z + (q - z).detach(), loss

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.codes_to_indices(z)
        return self.indices_to_codes(idx), idx

    @torch.no_grad()
    def split_dead(self, min_usage: float = 1.0, noise: float = 0.01) -> int:
        """Replace rarely used codes by perturbed copies of the most used ones; returns how many."""
        dead = (self.usage < min_usage).nonzero().flatten()
        if len(dead) == 0:
            self.usage.zero_()
            return 0
        used = (self.usage >= min_usage).nonzero().flatten()
        if len(used) == 0:
            self.usage.zero_()
            return 0
        used = used[self.usage[used].argsort(descending=True)]
        src = used[torch.arange(len(dead)) % len(used)]
        self.codebook[dead] = self.codebook[src] + noise * torch.randn_like(self.codebook[src])
        self.usage.zero_()
        return len(dead)
