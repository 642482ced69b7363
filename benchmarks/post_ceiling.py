"""How much a full-resolution detail pass (layers.PostFilter) can add to a model's decode: its ceiling.

Round 13 trained the pass alone on the codec's loop (`vtcodec train --part post`, 1300 steps,
lr 5e-4) and it moved the held-out photographs by at most +0.02 dB and +0.0002 SSIM. A pass too
small or too slow to move the output, or nothing a local filter of decoded pixels gets right in
general? This script separates the two.
It decodes a set of training clips once on the codec's loop (the pass's inputs captured: each
chunk's decoded frames and the reference they were decoded against), then fits a fresh pass to
exactly those frames at a high learning rate: on a handful of clips this is an over-fitting test
of whether the pass can reshape the output at all (round 13: at width 16 it memorises 256 frames,
+0.118 SSIM on them, in 1200 steps; 400 steps were not enough to say). It reports the gain over
the identity on the fitted clips and on clips it never saw (training sources, other draws). The
fitted pass is thrown away.

`--part head` asks the same of the pixel head instead (RefTok, tivtok2): its inputs, the decoder's
token features, are captured, and the head (as shipped, or widened with `--width`, the new
channels starting at zero as a warm start grows them) is fitted to the same frames: is the
detail there in the token features, for a head that can read it?

    python benchmarks/post_ceiling.py models/tivtok.safetensors --data media --clips 8 --steps 300
    python benchmarks/post_ceiling.py models/tivtok.safetensors --part head --width 48
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from vtcodec.models.layers import PixelHead
from vtcodec.models.registry import grown, warm_start
from vtcodec.train.data import ClipSampler, load_sources
from vtcodec.train.losses import frames01, ssim_frames
from vtcodec.train.steps import CLIP_FRAMES, encoder_step, quality_db


def captured(model, clips: torch.Tensor, part: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """What `part` sees on the codec's loop, per chunk: ([its inputs...], the chunk's targets).
    post: decoded frames (N, 3, T, H, W) and their references (N, 3, H, W); head: the token
    features (N*T, n, D) and the references. Forward hooks record them."""
    seen = []
    if part == "post":
        hooks = [model.post.register_forward_hook(lambda mod, args, out: seen.append([args[0].float(), args[1].float()]))]
    else:  # the head's input, then the reference head_to_video adds (its second argument)
        hooks = [model.head.register_forward_hook(lambda mod, args, out: seen.append([args[0].float()]))]
        inner = model.head_to_video
        model.head_to_video = lambda frames, ref: (seen[-1].append(ref.float()), inner(frames, ref))[1]
    g = torch.Generator().manual_seed(0)
    f = model.chunk_frames
    targets = []
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        for i in range(0, len(clips), 4):
            batch = clips[i:i + 4]
            encoder_step(model, batch, g, val=True)
            targets += [batch[:, :, j * f:(j + 1) * f] for j in range(batch.shape[2] // f)]
    for h in hooks:
        h.remove()
    model.__dict__.pop("head_to_video", None)
    return [torch.cat(parts) for parts in zip(*seen)], torch.cat(targets)


def apply(model, part: str, module, inputs: list[torch.Tensor], chunks: torch.Tensor) -> torch.Tensor:
    """`module` (the fitted copy of `part`) on the captured inputs of these chunks -> their video."""
    if part == "post":
        return module(inputs[0][chunks], inputs[1][chunks])
    t = model.config.frames
    rows = (chunks[:, None] * t + torch.arange(t)).flatten()
    g = model.grid
    return model.head_to_video(module(inputs[0][rows], (g, g)), inputs[1][chunks])


def widened(head, width: int, dim: int, patch: int):
    """A PixelHead of `width` holding `head`'s weights in its leading channels, the rest of its
    outgoing weights at zero (registry.grown, warm_start's growth rule): it computes what `head`
    computes until fitted."""
    new = PixelHead(dim, patch, width, out_ch=head.up2.out_channels // 4)
    old = head.state_dict()
    new.load_state_dict({k: grown(old[k], t) for k, t in new.state_dict().items()})
    return new


def score(model, part: str, module, inputs: list[torch.Tensor], target: torch.Tensor) -> tuple[float, float]:
    """(PSNR in dB of the pooled MSE, mean SSIM) of the decode through `module`."""
    with torch.no_grad():
        out = torch.cat([apply(model, part, module, inputs, torch.arange(i, min(i + 4, len(target))))
                         for i in range(0, len(target), 4)]).clamp(-1, 1)
    mse = ((out - target) ** 2).mean() / 4  # [-1, 1] -> [0, 1]
    return float(-10 * torch.log10(mse)), float(ssim_frames(frames01(out), frames01(target)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default="media")
    ap.add_argument("--clips", type=int, default=8, help="training clips the pass is fitted to")
    ap.add_argument("--unseen", type=int, default=8, help="other training-source clips it is only scored on")
    ap.add_argument("--part", choices=("post", "head"), default="post")
    ap.add_argument("--width", type=int, default=None, help="the pass's width (default 16); the head's (default: as shipped)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--frames", type=int, default=16, help="post: frames per optimisation step (the pass is per frame)")
    ap.add_argument("--chunks", type=int, default=2, help="head: chunks per optimisation step (its gate needs whole chunks)")
    a = ap.parse_args()
    torch.manual_seed(0)
    model, _ = warm_start(a.checkpoint, {"post_width": a.width or 16} if a.part == "post" else None)
    model.eval().requires_grad_(False)
    sampler = ClipSampler(load_sources(a.data, "train"), CLIP_FRAMES, model.tile, seed=1313, mix=(0.35, 0.45, 0.2))
    fit_in, fit_y = captured(model, sampler.batch(a.clips), a.part)
    other_in, other_y = captured(model, sampler.batch(a.unseen), a.part)
    if a.part == "post":
        module = copy.deepcopy(model.post)
    else:
        module = widened(model.head, max(a.width or 0, model.head.width), model.config.dim, model.config.patch)
    module.float().requires_grad_(True)
    base_fit = score(model, a.part, module, fit_in, fit_y)
    base_other = score(model, a.part, module, other_in, other_y)
    opt = torch.optim.Adam(module.parameters(), lr=a.lr)
    n = len(fit_y)
    g = torch.Generator().manual_seed(1)
    what = f"{a.frames} frames" if a.part == "post" else f"{a.chunks} chunks"
    print(f"{a.checkpoint}: {a.part} of width {getattr(module, 'width', a.width or 16)}, fitted to {a.clips} clips ({n} chunks), "
          f"{a.steps} steps of {what} at lr {a.lr:g}")
    print(f"  as it starts: fitted clips {base_fit[0]:.2f} dB / {base_fit[1]:.4f}, unseen {base_other[0]:.2f} dB / {base_other[1]:.4f}")
    t0 = time.perf_counter()
    for step in range(1, a.steps + 1):
        if a.part == "post":  # random frames of random chunks
            c = torch.randint(0, n, (a.frames,), generator=g)
            k = torch.randint(0, fit_y.shape[2], (a.frames,), generator=g)
            out = module(fit_in[0][c, :, k][:, :, None], fit_in[1][c]).clamp(-1, 1)  # (frames, 3, 1, H, W)
            y = fit_y[c, :, k][:, :, None]
        else:
            c = torch.randint(0, n, (a.chunks,), generator=g)
            out = apply(model, a.part, module, fit_in, c).clamp(-1, 1)
            y = fit_y[c]
        loss = quality_db(((out - y) ** 2).mean().clamp_min(1e-8), ssim_frames(frames01(out), frames01(y)), 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, a.steps // 4) == 0 or step == a.steps:
            f = score(model, a.part, module, fit_in, fit_y)
            o = score(model, a.part, module, other_in, other_y)
            print(f"  step {step:4d}: fitted {f[0] - base_fit[0]:+.2f} dB / {f[1] - base_fit[1]:+.4f} SSIM, "
                  f"unseen {o[0] - base_other[0]:+.2f} dB / {o[1] - base_other[1]:+.4f}  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
