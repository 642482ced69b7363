"""How much a full-resolution detail pass (layers.PostFilter) can add to a model's decode: its ceiling.

Round 13 trained the pass alone on the codec's loop (`vtcodec train --part post`, 1300 steps,
lr 5e-4) and it moved the held-out photographs by at most +0.02 dB and +0.0002 SSIM. Too few
steps, or nothing a local filter of decoded pixels can recover? This script separates the two.
It decodes a set of training clips once on the codec's loop (the pass's inputs captured: each
chunk's decoded frames and the reference they were decoded against), then fits a fresh pass to
exactly those frames at a high learning rate: on a handful of clips this is an over-fitting test,
an upper bound on what the pass can do with what the tokens carry. It reports the gain over the
identity on the fitted clips and on clips it never saw (training sources, other draws). The fitted
pass is thrown away.

    python benchmarks/post_ceiling.py models/tivtok.safetensors --data media --clips 8 --steps 300
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from vtcodec.models.layers import PostFilter
from vtcodec.models.registry import warm_start
from vtcodec.train.data import ClipSampler, load_sources
from vtcodec.train.losses import frames01, ssim_frames
from vtcodec.train.steps import CLIP_FRAMES, encoder_step


def captured(model, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(decoded frames (N, 3, T, H, W), their references (N, 3, H, W), targets) per chunk, as the
    codec's loop feeds the pass: a forward hook on model.post records its inputs."""
    seen = []
    hook = model.post.register_forward_hook(lambda mod, args, out: seen.append((args[0].float(), args[1].float())))
    g = torch.Generator().manual_seed(0)
    f = model.chunk_frames
    targets = []
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        for i in range(0, len(clips), 4):
            batch = clips[i:i + 4]
            encoder_step(model, batch, g, val=True)
            targets += [batch[:, :, j * f:(j + 1) * f] for j in range(batch.shape[2] // f)]
    hook.remove()
    return torch.cat([v for v, _ in seen]), torch.cat([r for _, r in seen]), torch.cat(targets)


def score(post: PostFilter | None, video, ref, target) -> tuple[float, float]:
    """(PSNR in dB of the pooled MSE, mean SSIM) of the pass's output (the identity when None)."""
    with torch.no_grad():
        out = torch.cat([(post(video[i:i + 4], ref[i:i + 4]) if post else video[i:i + 4]) for i in range(0, len(video), 4)])
    out = out.clamp(-1, 1)
    mse = ((out - target) ** 2).mean() / 4  # [-1, 1] -> [0, 1]
    return float(-10 * torch.log10(mse)), float(ssim_frames(frames01(out), frames01(target)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default="media")
    ap.add_argument("--clips", type=int, default=8, help="training clips the pass is fitted to")
    ap.add_argument("--unseen", type=int, default=8, help="other training-source clips it is only scored on")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--frames", type=int, default=16, help="frames per optimisation step (drawn from the fitted set)")
    a = ap.parse_args()
    torch.manual_seed(0)
    model, _ = warm_start(a.checkpoint, {"post_width": a.width})
    model.eval().requires_grad_(False)
    sampler = ClipSampler(load_sources(a.data, "train"), CLIP_FRAMES, model.tile, seed=1313, mix=(0.35, 0.45, 0.2))
    fit = captured(model, sampler.batch(a.clips))
    other = captured(model, sampler.batch(a.unseen))
    post = copy.deepcopy(model.post).float().requires_grad_(True)
    opt = torch.optim.Adam(post.parameters(), lr=a.lr)
    video, ref, target = fit
    n, t = video.shape[0], video.shape[2]
    g = torch.Generator().manual_seed(1)
    base_fit, base_other = score(None, *fit), score(None, *other)
    print(f"{a.checkpoint}: pass of width {a.width}, fitted to {a.clips} clips ({n} chunks), {a.steps} steps at lr {a.lr:g}")
    print(f"  identity: fitted clips {base_fit[0]:.2f} dB / {base_fit[1]:.4f}, unseen {base_other[0]:.2f} dB / {base_other[1]:.4f}")
    t0 = time.perf_counter()
    for step in range(1, a.steps + 1):
        c = torch.randint(0, n, (a.frames,), generator=g)
        k = torch.randint(0, t, (a.frames,), generator=g)
        v = video[c, :, k][:, :, None]  # (frames, 3, 1, H, W): the pass is per frame
        y = target[c, :, k][:, :, None]
        out = post(v, ref[c]).clamp(-1, 1)
        mse = ((out - y) ** 2).mean().clamp_min(1e-8)
        s = ssim_frames(frames01(out), frames01(y))
        loss = 10 * torch.log10(mse) + 10 * torch.log10((1 - s).clamp_min(1e-6))  # encoder_step's, ssim_weight 1
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, a.steps // 4) == 0 or step == a.steps:
            f, o = score(post, *fit), score(post, *other)
            print(f"  step {step:4d}: fitted {f[0] - base_fit[0]:+.2f} dB / {f[1] - base_fit[1]:+.4f} SSIM, "
                  f"unseen {o[0] - base_other[0]:+.2f} dB / {o[1] - base_other[1]:+.4f}  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
