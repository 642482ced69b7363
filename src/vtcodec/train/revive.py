"""Saturated FSQ channels: find them, and bring them back to where a loss can move them.

FSQ bounds each latent channel with tanh before rounding (quantizers/fsq.py). A channel whose
pre-activation sits far out on the tanh (|a| of 8-11 where the levels are reached by |a| < 1.3)
always rounds to the same level, and its gradient, the tanh's slope, is zero (1e-8 at |a| = 10):
no loss, the rate term's included, can move it again. Round 11 found four of the six TV-token
channels of the shipped TivTok like that, which is why its TV tokens use 10-14 of 64,000 codes per
clip and why neither a gentler rate term nor dropping the reference un-collapsed them
(models/README.md, round 12).

`saturation` measures it per stream and channel over a set of clips; `revive` rescales each
saturated channel's row of the layer that outputs it (`Tokenizer.latent_heads`) so its
pre-activations land at mean +-`centre` (the sign kept) with spread `spread`: with the defaults
most of them still round to the level they rounded to before (the rest, the tail of the spread,
to the next one in), so what the decoder receives changes little, but the slope is back
(tanh'(1.6) = 0.15). Training then needs a term that keeps them there
(`encoder_step`'s `sat_weight`), or the rate term can push them out again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

ALIVE = 0.05  # a channel whose mean tanh slope over the clips is below this counts as saturated


@dataclass
class Channel:
    stream: str
    channel: int
    mean: float  # of the pre-activation a = pre_bound(z)
    std: float
    slope: float  # mean tanh'(a): the factor every gradient to this channel is multiplied by
    levels_used: int

    @property
    def saturated(self) -> bool:
        return self.slope < ALIVE

    def as_dict(self) -> dict:
        return asdict(self) | {"saturated": self.saturated}


@torch.no_grad()
def stream_latents(model, clips: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each stream's latents (N, q) over the key chunks of `clips` (B, 3, T, tile, tile) in [-1, 1]."""
    f = model.chunk_frames
    out: dict[str, list[torch.Tensor]] = {}
    for clip in clips.split(1):
        latents, _ = model.encode_chunk_latents(clip[:, :, :f], None)
        for k, z in latents.items():
            out.setdefault(k, []).append(z.float().reshape(-1, z.shape[-1]))
    return {k: torch.cat(v) for k, v in out.items()}


def saturation(model, clips: torch.Tensor) -> list[Channel]:
    q = model.quant
    rows = []
    for name, z in stream_latents(model, clips).items():
        a = q.pre_bound(z)
        digits = q.bound(z).round()
        for i in range(a.shape[1]):
            rows.append(Channel(name, i, float(a[:, i].mean()), float(a[:, i].std()),
                                float((1 - torch.tanh(a[:, i]) ** 2).mean()), int(digits[:, i].unique().numel())))
    return rows


@torch.no_grad()
def revive(model, clips: torch.Tensor, centre: float = 1.6, spread: float = 0.3) -> list[Channel]:
    """Rescale every saturated channel (see module doc) in place; returns the channels before."""
    heads = model.latent_heads
    if not heads:
        raise ValueError(f"{model.arch} does not name its latent layers (Tokenizer.latent_heads)")
    before = saturation(model, clips)
    shifts = model.quant.pre_bound(torch.zeros(model.quant.dim))  # a = z + shift, per channel
    for ch in before:
        if not ch.saturated:
            continue
        layer = heads[ch.stream]
        k = spread / max(ch.std, 1e-6)
        target = centre if ch.mean >= 0 else -centre
        s = float(shifts[ch.channel])
        # a' = (a - mean) k + target with z = w x + b and a = z + s: only the channel's row changes
        layer.weight[ch.channel] *= k
        layer.bias[ch.channel] = (layer.bias[ch.channel] + s - ch.mean) * k + target - s
    return before
