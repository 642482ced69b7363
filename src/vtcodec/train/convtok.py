"""Training ConvTok (vtcodec.models.convtok): one network for its three modes.

Each step draws clips of 2 x `frames` frames. The first chunk is coded as a key chunk (no
reference), the second against a reference frame: the first chunk's last decoded frame (what
`ref` mode sends) or, with probability 1/2, its first decoded frame (further away in time, as
`tiv` mode's segment image is). Each chunk keeps a random prefix of the FSQ channels (nested
dropout), so one checkpoint serves every rate. The loss is the RGB mean squared error of both
plus CHROMA_WEIGHT times their Cb/Cr mean squared error.

Run folders are resumable: `state.pt` holds weights, optimiser, step and sampler seed;
`model.safetensors` the weights at the last validation (fp32). Usage:

    python -m vtcodec.train.convtok MEDIA RUN_DIR [--steps N] [--init CKPT] [--batch B] [--lr LR]
        [--device auto|cpu|cuda] [--budget-s S] [--export CKPT]

`--budget-s` sizes the run to a wall-clock budget (a lent GPU's minutes): after `CALIBRATE`
steps the schedule's length becomes the steps that fit in 90 % of what is left.
`--export` writes the weights as float16 (the shipped form) at every validation that is the best so far.

A run without normalisation can collapse (a run at lr 1e-3 fell from 16 to 12 dB in 200 steps
and stayed there): each validation that beats the best so far is kept (`best.pt`,
`best.safetensors`), and one more than ROLLBACK_DB below it sends the run back to that state with
half the learning rate.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vtcodec.atomic import replace_atomically
from vtcodec.models import registry
from vtcodec.models.convtok import ConvTok, rgb_to_ycc
from vtcodec.train.data import ClipStream, fixed_set, load_sources

VAL_CHANNELS = (2, 4, 8, 16)
CHROMA_WEIGHT = 2.0
LATENT_BOUND = 4.0    # |pre-quantization latent| beyond which FSQ's tanh is flat (every level is reached by ~2)
LATENT_WEIGHT = 0.1
CALIBRATE = 20  # steps timed before a --budget-s run fixes its length
ROLLBACK_DB = 1.5  # a validation this far below the best (mean over its figures) restores the best


def val_score(v: dict) -> float:
    return sum(v.values()) / len(v)


def step_loss(model: ConvTok, clip: torch.Tensor, g: torch.Generator, keep: tuple[int, int] | None = None,
              rate_weight: float = 0.0):
    """clip (B, 3, 2T, S, S) -> (loss, mse of the key chunk, mse of the conditional chunk);
    `rate_weight` > 0 adds that times `rate_proxy` (bits per token) of both chunks."""
    t = model.config.frames
    a, b = clip[:, :, :t], clip[:, :, t:2 * t]
    n, d = clip.shape[0], len(model.config.levels)
    if keep is None:
        ka = torch.randint(1, d + 1, (n,), generator=g)
        kb = torch.randint(1, d + 1, (n,), generator=g)
    else:
        ka, kb = torch.full((n,), keep[0]), torch.full((n,), keep[1])
    za = model.encode_latent(a)
    ra = model.decode_codes(model.quantize(za, ka))
    far = (torch.rand(n, generator=g) < 0.5).to(clip.device)
    ref = torch.where(far[:, None, None, None], ra[:, :, 0], ra[:, :, -1]).detach().clamp(-1, 1)
    rp, feats = model.ref_features(ref)
    zb = model.encode_latent(b, feats, ref)
    rb = model.decode_codes(model.quantize(zb, kb), rp, feats)
    mse_a = (ra - a).pow(2).mean()
    mse_b = (rb - b).pow(2).mean()
    loss = mse_a + mse_b + CHROMA_WEIGHT * (chroma_mse(ra, a) + chroma_mse(rb, b))
    if rate_weight:
        loss = loss + rate_weight * (rate_proxy(model, za, ka) + rate_proxy(model, zb, kb)).mean()
    return loss + LATENT_WEIGHT * (latent_excess(za) + latent_excess(zb)), mse_a, mse_b


def rate_proxy(model: ConvTok, z: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B,) a differentiable stand-in for the bits per token of the first `keep` (B,) FSQ digits of
    latents z (B, h, w, D): log2(1 + |digit - the mean of its left and upper neighbours' digits|),
    the neighbours' digits held fixed. That mean is the range coder's context (vtcodec.entropy,
    layout 3), so a digit near it is cheap; the proxy leaves out the coder's other context (the
    sign of the same digit in the previous chunk) and its adaptive tables."""
    u = model.quant.soft_digits(z)
    d = u.detach().round()
    left = torch.cat([d[:, :, :1], d[:, :, :-1]], 2)
    up = torch.cat([d[:, :1], d[:, :-1]], 1)
    kept = torch.arange(z.shape[-1], device=z.device) < keep.to(z.device).view(-1, 1, 1, 1)
    return (torch.log2(1 + (u - (left + up) / 2).abs()) * kept).sum(-1).mean((1, 2))


def latent_excess(z: torch.Tensor) -> torch.Tensor:
    """How far pre-quantization latents sit beyond LATENT_BOUND (squared, mean): FSQ's tanh is flat
    out there, so a latent that drifts off gets no gradient back (a run without this term reached
    |z| ~ 1e5 on every channel, all codes constant, and never recovered)."""
    return F.relu(z.abs() - LATENT_BOUND).pow(2).mean()


def chroma_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared Cb/Cr error (BT.601): a term RGB MSE on mostly grey footage underweights, so
    the first channels to go at a low rate are not the colours."""
    return (rgb_to_ycc(x)[:, 1:] - rgb_to_ycc(y)[:, 1:]).pow(2).mean()


def psnr(mse: float) -> float:
    return 10 * math.log10(4 / max(mse, 1e-12))  # pixels in [-1, 1]


@torch.no_grad()
def validate(model: ConvTok, val: torch.Tensor, batch: int = 4) -> dict:
    model.eval()
    out = {}
    dev = next(model.parameters()).device
    for k in VAL_CHANNELS:
        ma = mb = 0.0
        for i in range(0, len(val), batch):
            _, a, b = step_loss(model, val[i:i + batch].to(dev), torch.Generator().manual_seed(0), keep=(k, max(1, k // 2)))
            ma += a.item() * len(val[i:i + batch])
            mb += b.item() * len(val[i:i + batch])
        out[f"key_psnr_k{k}"] = round(psnr(ma / len(val)), 3)
        out[f"next_psnr_k{k // 2 or 1}"] = round(psnr(mb / len(val)), 3)
    model.train()
    return out


def _opt_state_with(opt_state: dict, names: list[str], added: set[str]) -> dict:
    """An optimiser state saved for the parameters `names` less `added` (same order), renumbered
    for all of `names`: the added parameters get no state (a fresh start), the others keep theirs."""
    old = [n for n in names if n not in added]
    where = {n: i for i, n in enumerate(old)}
    state = {j: opt_state["state"][where[n]] for j, n in enumerate(names)
             if n in where and where[n] in opt_state["state"]}
    (group,) = opt_state["param_groups"]
    return {"state": state, "param_groups": [{**group, "params": list(range(len(names)))}]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("media")
    p.add_argument("run")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--init", help="start from this checkpoint's weights (a fresh run folder only)")
    p.add_argument("--config", default="{}", help="JSON config overrides (on a resume: fields without weights)")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto (cuda when there is one), cpu or cuda")
    p.add_argument("--budget-s", type=float, default=None, help="size the run to this many seconds of wall clock")
    p.add_argument("--export", help="also write the weights here as float16 at every best validation")
    p.add_argument("--rate-weight", type=float, default=0.0,
                   help="weight of rate_proxy (bits per token) in the loss, against MSE on [-1, 1] pixels (0: none)")
    a = p.parse_args(argv)
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    t_start = time.time()

    run = Path(a.run).expanduser()
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(a.seed)
    if (run / "state.pt").exists():
        st = torch.load(run / "state.pt", weights_only=False, map_location="cpu")
        # config overrides may change what holds no weights (FSQ levels, default channels)
        model = registry.build("convtok", {**st["config"], **json.loads(a.config)})
        missing, unexpected = model.load_state_dict(st["model"], strict=False)
        if unexpected or any(not k.startswith(ConvTok.ADDABLE) for k in missing):
            raise SystemExit(f"error: {run}/state.pt does not fit this config: missing {missing}, unexpected {unexpected}")
        if missing:  # modules added since (each starts as the identity): the others keep their optimiser state
            print(f"new parameters {missing}: their optimiser state starts fresh", flush=True)
            st["opt"] = _opt_state_with(st["opt"], [n for n, _ in model.named_parameters()], set(missing))
    elif a.init:
        model, _ = registry.warm_start(a.init)
        st = None
    else:
        model = registry.build("convtok", json.loads(a.config))
        st = None
    model.to(dev).to(memory_format=torch.channels_last)  # oneDNN's fast layout: a CPU step in 0.72x the time
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4, betas=(0.9, 0.99))
    step = 0
    if st is not None:
        if "opt" in st:
            opt.load_state_dict(st["opt"])
        step = st["step"]
    lr_scale, best = (st or {}).get("lr_scale", 1.0), (st or {}).get("best", -math.inf)
    print(f"convtok {model.params / 1e6:.2f}M params, from step {step}, on {dev}", flush=True)
    start_step, sized = step, a.budget_s is None

    val = fixed_set(load_sources(a.media, "val"), 16, 2 * model.config.frames, a.size)
    train_src = load_sources(a.media, "train")
    stream = ClipStream(train_src, 2 * model.config.frames, a.size, a.batch, key=(a.seed, step))
    loader = iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=a.workers,
                                              persistent_workers=a.workers > 0))
    g = torch.Generator().manual_seed(a.seed * 1000003 + step)
    log = open(run / "log.jsonl", "a")
    t0, seen = time.time(), 0
    while step < a.steps:
        if not sized and step - start_step == CALIBRATE:
            per_step = (time.time() - t0) / CALIBRATE
            a.steps = step + max(1, int((a.budget_s * 0.9 - (time.time() - t_start)) / per_step))
            sized = True
            print(f"calibration: {per_step:.3f} s/step; the run ends at step {a.steps}", flush=True)
        lr = lr_scale * a.lr * min(1.0, (step + 1) / a.warmup) * 0.5 * (1 + math.cos(math.pi * step / a.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        clip = next(loader).to(dev, non_blocking=True)
        loss, ma, mb = step_loss(model, clip, g, rate_weight=a.rate_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen += 1
        if step % 25 == 0:
            rec = {"step": step, "loss": round(loss.item(), 5), "psnr_key": round(psnr(ma.item()), 2),
                   "psnr_next": round(psnr(mb.item()), 2), "lr": lr, "grad": round(gn.item(), 3),
                   "s_per_step": round((time.time() - t0) / seen, 3)}
            print(json.dumps(rec), flush=True)
        if step % a.val_every == 0 or step == a.steps:
            v = validate(model, val)
            rec = {"step": step, "val": v, "time": time.strftime("%H:%M:%S")}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            score = val_score(v)
            if score < best - ROLLBACK_DB and (run / "best.pt").exists():
                kept = torch.load(run / "best.pt", weights_only=False, map_location="cpu")
                model.load_state_dict(kept["model"])
                opt.load_state_dict(kept["opt"])
                lr_scale = kept["lr_scale"] / 2
                print(f"step {step}: validation {score:.2f} dB, {best - score:.2f} below the best (step "
                      f"{kept['step']}): back to it at {lr_scale:g} x the learning rate", flush=True)
                log.write(json.dumps({"step": step, "rollback_to": kept["step"], "lr_scale": lr_scale}) + "\n")
                v = kept["val"]
            state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "config": model.config_dict(),
                     "lr_scale": lr_scale, "best": max(best, score), "val": v}
            if score > best:
                best = score
                replace_atomically(run / "best.pt", lambda tmp: torch.save(state, tmp))
                registry.save_checkpoint(model, run / "best.safetensors", {"step": step, "val": v})
                if a.export:
                    registry.save_checkpoint(model, a.export, {"step": step, "val": v}, dtype=torch.float16)
            replace_atomically(run / "state.pt", lambda tmp: torch.save(state, tmp))
            registry.save_checkpoint(model, run / "model.safetensors", {"step": step, "val": v})


if __name__ == "__main__":
    main()
