"""Saturated FSQ channels: find them, and bring them back to where a loss can move them.

FSQ bounds each latent channel with tanh before rounding (quantizers/fsq.py). A channel whose
pre-activation sits far out on the tanh (|a| of 8-11 where the levels are reached by |a| < 1.3)
always rounds to the same level, and its gradient, the tanh's slope, is zero (1e-8 at |a| = 10):
no loss, the rate term's included, can move it again. Four of the six TV-token channels of the
shipped TivTok (and of RefTok's target tokens, once trained with a rate term) are like that: why
those tokens use 10-14 of 64,000 codes per clip, and why neither a gentler rate term nor dropping
the reference un-collapsed them (docs/RESEARCH.md).

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
    mean_abs: float  # mean |a|
    minority: float  # share of the latents on the less populated side of a = 0

    @property
    def saturated(self) -> bool:
        return self.slope < ALIVE

    def as_dict(self) -> dict:
        return asdict(self) | {"saturated": self.saturated}


@torch.no_grad()
def stream_latents(model, clips: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each stream's latents (N, q) over the key chunks of `clips` (B, 3, T, tile, tile) in [-1, 1]
    (a key chunk codes every stream; the main stream of later chunks is not measured)."""
    f = model.chunk_frames
    out: dict[str, list[torch.Tensor]] = {}
    for clip in clips.split(1):
        latents, _ = model.encode_chunk_latents(clip[:, :, :f], None)
        for k, z in latents.items():
            out.setdefault(k, []).append(z.float().reshape(-1, z.shape[-1]))
    return {k: torch.cat(v) for k, v in out.items()}


def channel_stats(quant, latents: dict[str, torch.Tensor]) -> list[Channel]:
    """Per stream and channel, the statistics of latents {stream: (..., q)} already computed."""
    rows = []
    for name, z in latents.items():
        z = z.float().reshape(-1, z.shape[-1])
        a, digits = quant.pre_bound(z), quant.bound(z).round()
        for i in range(a.shape[1]):
            pos = float((a[:, i] >= 0).float().mean())
            rows.append(Channel(name, i, float(a[:, i].mean()), float(a[:, i].std()),
                                float((1 - torch.tanh(a[:, i]) ** 2).mean()), int(digits[:, i].unique().numel()),
                                float(a[:, i].abs().mean()), min(pos, 1 - pos)))
    return rows


def saturation(model, clips: torch.Tensor) -> list[Channel]:
    return channel_stats(model.quant, stream_latents(model, clips))


TWO_SIDED = 0.1  # a saturated channel with at least this share on each side of 0 keeps its sign per latent
MAX_GAIN = 1e3


@torch.no_grad()
def revive(model, clips: torch.Tensor, centre: float = 1.6, spread: float = 0.3) -> list[Channel]:
    """Rescale every saturated channel (see module doc) in place; returns the channels as measured
    before their stream was revived. Streams go in `latent_heads` order, each measured after the
    ones before it changed (a key stream's image is what the main stream is coded against).

    A channel on one side of the tanh moves to mean +-centre, std `spread`; one split between both
    ends (>= TWO_SIDED of its latents on each side) is scaled towards 0 instead, |a| to `centre` on
    average with every latent's sign kept, so its levels are not merged into one."""
    heads = model.latent_heads
    if not heads:
        raise ValueError(f"{model.arch} does not name its latent layers (Tokenizer.latent_heads)")
    q = model.quant
    shifts = q.pre_bound(torch.zeros(q.dim, device=q._levels.device))  # a = z + shift, per channel
    before, measured = [], None
    for stream, layer in heads.items():
        measured = measured or saturation(model, clips)  # again only once a stream before has changed
        rows = [r for r in measured if r.stream == stream]
        before += rows
        for ch in rows:
            if not ch.saturated:
                continue
            measured = None
            s = float(shifts[ch.channel])
            if ch.minority >= TWO_SIDED:  # a' = a k
                k, mean, target = min(centre / max(ch.mean_abs, 1e-6), MAX_GAIN), 0.0, 0.0
            else:  # a' = (a - mean) k + target
                k, mean = min(spread / max(ch.std, 1e-6), MAX_GAIN), ch.mean
                target = centre if ch.mean >= 0 else -centre
            # with z = w x + b and a = z + s, only the channel's row of the head changes
            layer.weight[ch.channel] *= k
            layer.bias[ch.channel] = (layer.bias[ch.channel] + s - mean) * k + target - s
    return before
