"""How each architecture is trained on a clip: the only model-specific part of training.

Every sampled clip has 32 frames; the second half is what gets reconstructed, the first half
supplies what a codec would have at that point (another chunk of the same shot for TivTok's TIV
reuse, a reference frame at a random gap for RefTok).

`RECIPES` holds each architecture's training knobs and their defaults; `vtcodec train --recipe '{"reuse_p": 0.8}'` overrides them and the run metadata
records the values used.

`PARTS` trains one part alone (`vtcodec train --part NAME`), the rest of the model frozen:
- `intra` (RefTok, and tivtok2, whose TIV tokens it codes): the intra tokenizer, which codes one frame per segment and whose
  reconstruction is the reference every following chunk builds on; as part of the full step it
  saw one frame per clip, alone it sees eight.
- `encoder` (every model): the parameters only the encoder uses (`Tokenizer.encoder_only`), trained
  through the frozen decoder on the codec's own loop and objective (`encoder_step`). It is the
  encoder-side refinement search (vtcodec.refine) amortised into the encoder: the decoder, and so
  what every token means, stays exactly as it was.
- `post` (RefTok, tivtok2, with `post_width`): the full-resolution detail pass after the pixel head
  (layers.PostFilter), on the codec's own loop (`encoder_step`); the encoder is frozen, so
  TivTok's tokens stay as they were (RefTok's later chunks are coded against a filtered frame).
"""

from __future__ import annotations

import fnmatch
import inspect

import torch

from vtcodec.refine import soft_bits
from vtcodec.tiling import tile_mse
from vtcodec.train.losses import recon_loss, ssim_frames, frames01

CLIP_FRAMES = 32


def tivtok_step(model, clip: torch.Tensor, g: torch.Generator, val: bool = False, *, reuse_p: float = 0.5):
    """reuse_p: share of steps whose TIV tokens come from the clip's other chunk (cross-chunk reuse)."""
    half = clip.shape[2] // 2
    target = clip[:, :, half:]
    reuse = (not val) and torch.rand((), generator=g).item() < reuse_p
    out = model(target, tiv_video=clip[:, :, :half] if reuse else None)
    loss, logs = recon_loss(out["recon"], target)
    return loss, out["recon"], target, logs


def reftok_step(model, clip: torch.Tensor, g: torch.Generator, val: bool = False, *,
                near_p: float = 0.0, intra_p: float = 0.3, drop_p: float = 0.1):
    """near_p: share of steps whose reference is the frame right before the targets (what every
    following chunk sees in the codec), otherwise the gap is uniform in 1..16; intra_p: share of
    steps conditioned on the intra-coded reference; drop_p: share of samples with a zeroed one."""
    half = clip.shape[2] // 2
    target = clip[:, :, half:]
    b = clip.shape[0]
    if val:  # what the codec does at a segment start: intra-coded first frame as the reference
        ref, use_intra, drop = clip[:, :, half], True, None
    else:
        gap = int(torch.randint(1, half + 1, (), generator=g))  # wide gaps fight posterior collapse
        if near_p > 0 and torch.rand((), generator=g).item() < near_p:  # no draw at 0: runs from before near_p replay
            gap = 1
        ref = clip[:, :, half - gap]
        use_intra = torch.rand((), generator=g).item() < intra_p
        drop = torch.rand(b, generator=g) < drop_p
    out = model(target, ref, use_intra_ref=use_intra, drop=drop)
    loss, logs = recon_loss(out["recon"], target)
    intra_loss, intra_logs = recon_loss(out["intra_recon"][:, :, None], clip[:, :, half if val else half - gap][:, :, None])
    logs["intra_ssim"] = intra_logs["ssim"]
    return loss + 0.5 * intra_loss, out["recon"], target, logs


def reftok_intra_step(model, clip: torch.Tensor, g: torch.Generator, val: bool = False):
    """The intra (reference-frame) tokenizer alone, on 8 frames of each clip (every 4th frame from a
    random offset); validation codes the frame a codec would intra-code (as `reftok_step` does)."""
    if val:
        frames = clip[:, :, clip.shape[2] // 2]
    else:
        first = int(torch.randint(0, 4, (), generator=g))
        frames = clip[:, :, first::4].transpose(1, 2).flatten(0, 1)  # (B*8, 3, H, W)
    recon = model.intra(frames)
    loss, logs = recon_loss(recon[:, :, None], frames[:, :, None])
    return loss, recon[:, :, None], frames[:, :, None], logs


def vidtok_step(model, clip: torch.Tensor, g: torch.Generator, val: bool = False):
    target = clip[:, :, clip.shape[2] // 2:]
    out = model(target)
    loss, logs = recon_loss(out["recon"], target)
    return loss, out["recon"], target, logs


SAT_EDGE = 2.0  # |pre-activation| beyond which sat_weight pushes a latent back (tanh'(2) = 0.07)


def saturation_penalty(quant, z: torch.Tensor) -> torch.Tensor:
    """(B,) mean over a tile's latents z (B, n, q) of relu(|a| - SAT_EDGE)^2, a = quant.pre_bound(z):
    zero where every channel can still be moved, and a gradient that does not pass through the
    tanh, so it reaches channels the tanh has shut (vtcodec.train.revive)."""
    a = quant.pre_bound(z.float())
    return torch.relu(a.abs() - SAT_EDGE).square().flatten(1).mean(1)


SPREAD_MIN = 0.5  # levels: the spread within a tile below which spread_weight pushes a channel apart


def spread_penalty(quant, z: torch.Tensor) -> torch.Tensor:
    """(B,) mean over channels of relu(SPREAD_MIN - s)^2, s a channel's standard deviation (in
    levels, before rounding) over a tile's latents z (B, n, q): zero for a channel that varies
    across the tile, a push apart for one that sits on a single level so that the decoder meets
    variation it can learn to use. Its gradient passes through the tanh: a saturated channel
    (the shipped TivTok's TV channels) needs `vtcodec.train.revive` or sat_weight first."""
    spread = quant.bound(z.float()).std(1)
    return torch.relu(SPREAD_MIN - spread).square().mean(1)


def quality_db(mse: torch.Tensor, ssim: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """The quality part of the codec loop's objective, in dB: 10 log10(MSE), plus ssim_weight x
    10 log10(1 - SSIM) when the weight is on (per tile-chunk in `encoder_step`)."""
    loss = 10 * torch.log10(mse)
    return loss + ssim_weight * 10 * torch.log10((1 - ssim).clamp_min(1e-6)) if ssim_weight else loss


def encoder_step(model, clip: torch.Tensor, g: torch.Generator, val: bool = False, *, slope: float = 0.0,
                 ssim_weight: float = 0.0, sat_weight: float = 0.0, spread_weight: float = 0.0):
    """The codec's loop over the clip's chunks, as `vtcodec encode --refine` scores it: the first
    chunk starts a segment, each next one continues from the decoder's state (closed loop, as the
    codec's encoder carries it); the loss is the mean over tile-chunks of 10 log10(MSE) + slope *
    log2(bits), the refinement search's objective, bits from the same smooth estimate
    (`refine.soft_bits`, counts over the batch). Gradients reach the encoder through the FSQ's
    straight-through rounding and through each reference the next chunk builds on.

    slope defaults to 0: encoder-only runs at 3 and 6 slid down the rate axis at a worse exchange
    than the search at the same slope (docs/RESEARCH.md).

    ssim_weight adds ssim_weight * 10 log10(1 - SSIM) per tile-chunk (SSIM of the clamped output,
    as the codec writes it): a structural term in the same dB units as the MSE term, so a weight of
    1 values a 10 % cut of (1 - SSIM) like a 10 % cut of the MSE. 0 (the default) is the
    MSE-only loop.

    sat_weight adds sat_weight * `saturation_penalty` over every stream: it keeps FSQ
    channels out of the tanh's flat tails, where the rate term had parked four of TivTok's six TV
    channels for good. spread_weight adds spread_weight * `spread_penalty` over every stream: a
    push apart for channels that a tile codes on one level. 0 (the defaults) leaves the loss as
    before."""
    f = model.chunk_frames
    grids = model.stream_grids
    enc_state = dec_state = None
    recons, losses, mses, bits_all, ssims = [], [], [], [], []
    penalties: dict[str, list[torch.Tensor]] = {}
    for i in range(clip.shape[2] // f):
        chunk = clip[:, :, i * f:(i + 1) * f]
        latents, enc_next = model.encode_chunk_latents(chunk, enc_state, closed_loop=False)
        codes = {k: model.quant(z) for k, z in latents.items()}
        recon, dec_state = model.decode_chunk_codes(codes, dec_state)
        enc_state = model.next_encoder_state(enc_next, dec_state)
        out = recon.float().clamp(-1, 1)  # as the codec writes it
        mse = tile_mse(out, chunk).clamp_min(1e-8)
        bits = sum(soft_bits(model.quant, z, tuple(grids[k])) for k, z in latents.items())
        with torch.set_grad_enabled(torch.is_grad_enabled() and bool(ssim_weight)):  # else for the log only
            tile_ssim = ssim_frames(frames01(out), frames01(chunk), per_image=True).view(out.shape[0], -1).mean(1)
        loss = quality_db(mse, tile_ssim, ssim_weight) + slope * torch.log2(bits)
        for name, weight, term in (("sat", sat_weight, saturation_penalty), ("spread", spread_weight, spread_penalty)):
            if weight:  # logged unweighted, so runs at different weights compare
                penalty = sum(term(model.quant, z) for z in latents.values())
                loss = loss + weight * penalty
                penalties.setdefault(name, []).append(penalty.detach())
        losses.append(loss)
        recons.append(out)
        mses.append(mse.detach())
        bits_all.append(bits.detach())
        ssims.append(tile_ssim.detach())
    logs = {"mse_db": float(10 * torch.log10(torch.stack(mses)).mean()), "soft_bits": float(torch.stack(bits_all).mean()),
            "ssim": float(torch.stack(ssims).mean())}  # every tile-chunk has as many frames: the clip's mean SSIM
    logs |= {name: float(torch.stack(v).mean()) for name, v in penalties.items()}
    return torch.stack(losses).mean(), torch.cat(recons, dim=2), clip, logs


# tivtok2 is RefTok's network with the TIV image as the reference: RefTok's step trains it whole
# (the reference at a random gap is a TIV image the targets are that far from); its own
# behaviour, one TIV image for the segment, is what `--part codec` trains.
STEPS = {"tivtok": tivtok_step, "tivtok2": reftok_step, "reftok": reftok_step, "vidtok": vidtok_step}
# (arch, part) -> step function training only that part; a part named like one of the model's
# token streams is that submodule (its validation reports that stream's bits). "codec" is every
# parameter, decoder included, on the codec's own loop (encoder_step): a trained model fine-tuned
# to the chunks, references and states it meets when coding a file.
PARTS = ({(arch, "intra"): reftok_intra_step for arch in ("reftok", "tivtok2")} | {(arch, "encoder"): encoder_step for arch in STEPS}
         | {(arch, "codec"): encoder_step for arch in STEPS} | {(arch, "post"): encoder_step for arch in ("reftok", "tivtok2")})


def part_patterns(model, part: str) -> tuple[str, ...]:
    """Name patterns (fnmatch) of the parameters `--part part` trains."""
    if part == "codec":
        return ("*",)
    return model.encoder_only if part == "encoder" else (f"{part}.*",)


def in_part(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether tensor `name` (a warm start's "name[o:]" too) matches one of a part's patterns."""
    return any(fnmatch.fnmatchcase(name.split("[")[0], p) for p in patterns)


def knobs(fn) -> dict[str, float]:
    """A step function's training knobs and their defaults: its keyword-only arguments."""
    return {p.name: p.default for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}


RECIPES: dict[str, dict[str, float]] = {arch: knobs(fn) for arch, fn in STEPS.items()}
