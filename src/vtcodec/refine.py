"""Encoder-side refinement: search for tokens that the (fixed) decoder renders closer to the input.

A tokenizer's encoder is one amortised guess at the best tokens for a chunk. The decoder is what
the bitstream is judged by, so the encoder may spend extra time looking for better ones -- the
learned-codec counterpart of a classical encoder's rate-distortion search, and like it invisible
to the decoder: the format, the decoder and every file already written are unchanged.

The search runs on the encoder's pre-quantization latents: each stream's latents are quantized by
the model's FSQ (straight-through rounding), decoded by `decode_chunk_codes`, and moved by Adam
against the mean squared error to the input (the PSNR the bench reports). It starts from the
encoder's own latents, so the coordinates that flip to a neighbouring level first are those the
encoder left nearest a rounding boundary (a first version that searched from the rounded digits
moved every digit at Adam's common speed and kept no change in 5 steps on the validation clips).
Every step is scored exactly (the quantized latents are real tokens), and each tile keeps the
best tokens it has seen, so refining never makes a tile's objective worse than the encoder's own
tokens. The state a chunk hands to the next (the previous decoded frame, the segment's TIV
tokens, the causal code context) is recomputed from the chosen tokens, so the loop stays closed.

Rate. Distortion alone buys quality with bits (the refined tokens are less predictable for the
context model). With `slope` > 0 each tile minimises 10 log10(MSE) + slope * log2(bits) instead:
a change must gain `slope` dB per doubling of the tile's bits. The choice between steps uses the
tile's exact range-coded bits (`tile_bits`), the gradient a smooth estimate of them under the
same context model (`soft_bits`).

It costs `steps` decoder passes forward and backward per chunk (the encoder still runs once), and
twice that where the codec also tries a refresh; the decoder is untouched. What it buys is
measured through the real codec, bits from file sizes (`benchmarks/rd_sweep.py`; README).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import torch

from vtcodec import entropy
from vtcodec.errors import VtcodecError
from vtcodec.models.base import Streams, Tokenizer
from vtcodec.tiling import tile_mse

DEFAULT_LR = 0.1   # Adam step on the latents (FSQ's tanh input); chosen on the validation clips (README)
_CTX_BASE = 70      # > max level + 1: spatial context ids (a, b) -> SPATIAL + a * base + b
_SPATIAL = 1 << 12  # temporal context ids are 1 + digit < 65, spatial ones start here
_SMOOTH = 0.5       # soft_bits: a digit's weight on level j is softmax(-(u - j)^2 / _SMOOTH)


def check_settings(steps: int, slope: float = 0.0, lr: float | None = None) -> float:
    """Validate a search's settings (VtcodecError, one line); returns the Adam step to use."""
    if steps < 0:
        raise VtcodecError(f"refine must be >= 0 steps, got {steps}")
    if not (math.isfinite(slope) and slope >= 0):
        raise VtcodecError(f"refine_slope must be a finite number >= 0, got {slope}")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise VtcodecError(f"refine_lr must be a finite number > 0, got {lr}")
    if not steps and (slope or lr is not None):
        raise VtcodecError("refine_slope and refine_lr shape the search that refine > 0 turns on; give refine too")
    return DEFAULT_LR if lr is None else lr


def soft_bits(quant, z: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """(B,) a differentiable stand-in for the range-coded bits of each tile's tokens quantized from
    latents z (B, n, q), n = T*H*W of `grid`: the search uses its gradient; its value overestimates
    (1.3-1.5x the coded bits on real tiles, 9-11x on a constant one, measured on a validation
    clip with the shipped models), which makes the
    rate term's pull in the gradient weaker than `slope` says. The choice between steps uses exact
    bits (`tile_bits`). Using the hard cost as the value (gradient from the soft one) is untried.

    The coder's context model (vtcodec.entropy) with its tables replaced by counts over the whole
    batch, each digit leaving itself out: cost(s | ctx) = -log2((INIT + INC n(ctx, s)) / (L INIT +
    INC n(ctx))). Contexts come from the rounded digits (held fixed); a digit's cost is the
    expected cost under soft weights over all its levels centred on its continuous value, so the
    gradient points towards cheap levels, also those more than one step away (the context's own
    digit, typically).
    """
    b, n, q = z.shape
    levels = quant._levels
    u = quant.soft_digits(z)
    d = u.detach().round().long().minimum(levels.long() - 1).clamp(min=0)
    u, d = u.view(b, *grid, q), d.view(b, *grid, q)
    ctx = contexts(d)
    n_ctx = _SPATIAL + _CTX_BASE * _CTX_BASE
    bits = u.new_zeros(b)
    for i, lv in enumerate(quant.levels):
        c, di, ui = ctx[..., i].reshape(-1), d[..., i].reshape(-1), u[..., i].reshape(-1)
        count = torch.bincount(c * lv + di, minlength=n_ctx * lv).float()
        total = torch.bincount(c, minlength=n_ctx).float()[c] - 1
        j = torch.arange(lv, device=z.device)
        k = count[c[:, None] * lv + j] - (j == di[:, None]).float()  # (N, L), leaving itself out
        cost = -torch.log2((entropy.INIT + entropy.INC * k) / (lv * entropy.INIT + entropy.INC * total[:, None]))
        weight = torch.softmax(-(ui[:, None] - j) ** 2 / _SMOOTH, dim=1)  # a soft digit: sees levels beyond the next
        bits = bits + (weight * cost).sum(1).view(b, -1).sum(1)
    return bits


def contexts(d: torch.Tensor) -> torch.Tensor:
    """Context ids of digits d (B, T, H, W, q), per digit position i the coder's rule (vtcodec.entropy:
    the previous step's digit after the first step, else the left and upper neighbours' digits)
    with other numbers: two digits i share an id here exactly when they share the coder's table."""
    ctx = torch.empty_like(d)
    ctx[:, 1:] = 1 + d[:, :-1]
    first = 1 + d[:, 0]
    left, up = torch.zeros_like(first), torch.zeros_like(first)
    left[:, :, 1:], up[:, 1:] = first[:, :, :-1], first[:, :-1]
    ctx[:, 0] = _SPATIAL + left * _CTX_BASE + up
    return ctx


def tile_bits(model: Tokenizer, streams: Streams) -> torch.Tensor:
    """(B,) range-coded bits of each tile's tokens, every stream coded on its own (vtcodec.entropy)."""
    levels, grids = model.stream_levels, model.stream_grids
    out = []
    for row in range(next(iter(streams.values())).shape[0]):
        out.append(sum(8 * len(entropy.encode(v[row].cpu().numpy(), levels[k], tuple(grids[k])))
                       for k, v in streams.items()))
    return torch.tensor(out, dtype=torch.float64)


@torch.enable_grad()
def refine_latents(model: Tokenizer, video: torch.Tensor, latents: dict[str, torch.Tensor], state: Any | None,
                   steps: int, lr: float = DEFAULT_LR, slope: float = 0.0,
                   only: Collection[str] | None = None) -> tuple[Streams, torch.Tensor]:
    """Search `steps` steps from the encoder's `latents` (B, n, q) per stream for the tokens that
    decode (from `state`) closest to `video` (B, 3, T, H, W).

    `slope` > 0 makes it a rate-distortion search: each tile minimises 10 log10(MSE) + slope *
    log2(bits), i.e. a token change must buy `slope` dB per doubling of the tile's bits (bits
    exact in the choice, `soft_bits` in the gradient). 0: distortion only.

    `only`: the streams the search moves (default all); the others keep the encoder's tokens
    (benchmarks/rd_sweep.py --refine-only: which stream holds the gain).

    Returns (token indices (B, n) per stream, the (2, B) objective of the encoder's tokens and of
    the returned ones: per-tile MSE when slope is 0, else the dB objective above). With steps 0
    the encoder's tokens come back.
    """
    quant = model.quant
    grids = model.stream_grids
    moved = set(latents) if only is None else set(only) & set(latents)
    params = {k: z.detach().float().clone().requires_grad_(True) for k, z in latents.items() if k in moved}
    kept = {k: quant(z.detach().float()) for k, z in latents.items() if k not in moved}
    kept_bits = sum(soft_bits(quant, latents[k].detach(), tuple(grids[k])) for k in kept) if slope else 0
    steps = steps if params else 0  # nothing to move in this chunk (e.g. only the intra stream, not a key chunk)
    best: dict[str, torch.Tensor] = {}
    first_err = best_err = None
    opt = torch.optim.Adam(list(params.values()), lr=lr) if params else None
    frozen = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for step in range(steps + 1):
            codes = {k: quant(z) for k, z in params.items()} | kept
            out, _ = model.decode_chunk_codes(codes, state)
            mse = tile_mse(out, video).clamp_min(1e-12)  # a perfect tile must not make log10 -inf
            with torch.no_grad():
                idx = {k: quant.codes_to_indices(c) for k, c in codes.items()}
                err = mse.detach()
                if slope:
                    err = 10 * torch.log10(err) + slope * torch.log2(tile_bits(model, idx)).to(err)
                if best_err is None:
                    first_err, best_err, best = err, err, idx
                else:
                    better = err < best_err
                    best_err = torch.where(better, err, best_err)
                    best = {k: torch.where(better[:, None], idx[k], best[k]) for k in best}
            if step == steps:
                break
            if slope:
                bits = kept_bits + sum(soft_bits(quant, z, tuple(grids[k])) for k, z in params.items())
                loss = (10 * torch.log10(mse) + slope * torch.log2(bits)).sum()
            else:
                loss = mse.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p, g in zip(model.parameters(), frozen):
            p.requires_grad_(g)
    return best, torch.stack([first_err, best_err])
