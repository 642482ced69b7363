"""Revive a checkpoint's saturated FSQ channels (vtcodec.train.revive) and save it as a new init.

    python scripts/revive_latents.py models/tivtok.safetensors runs/r12_tiv_revived.safetensors --data media

Prints every channel's pre-activation mean, spread, tanh slope and levels used, before and after,
over `--clips` clips of the training split of `--data` (`vtcodec train`'s sampler and default mix,
seed `--seed`; each clip's first chunk), and after again on as many other clips (seed + 1), which
the rescaling was not fitted to; a channel whose mean slope is under 0.05 is rescaled. Train from the result with
`vtcodec train --init OUT --part codec --recipe '{"sat_weight": 1, ...}'` so the channels stay
where a gradient reaches them.
"""

import argparse
import json

import torch

from vtcodec.models.registry import load_checkpoint, read_metadata, save_checkpoint, sha256_file
from vtcodec.train.data import ClipSampler, load_sources
from vtcodec.train.revive import revive, saturation, stream_latents

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("src")
ap.add_argument("dst")
ap.add_argument("--data", required=True, help="training media folder (its train split is used)")
ap.add_argument("--clips", type=int, default=24)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--centre", type=float, default=1.6)
ap.add_argument("--spread", type=float, default=0.3)
a = ap.parse_args()

model = load_checkpoint(a.src).eval()
train = load_sources(a.data, "train")
clips, other = (ClipSampler(train, model.chunk_frames, model.tile, seed=a.seed + i).batch(a.clips) for i in (0, 1))


def show(title, rows):
    print(title)
    for r in rows:
        print(f"  {r.stream:>7} ch{r.channel}: mean {r.mean:+7.2f} std {r.std:5.2f} slope {r.slope:.4f} "
              f"levels {r.levels_used}{'  SATURATED' if r.saturated else ''}")


def digits(m, x):
    return {k: m.quant.bound(z).round() for k, z in stream_latents(m, x).items()}


held_out = digits(model, other)
before = revive(model, clips, a.centre, a.spread)
after = saturation(model, clips)
show("before", before)
show("after", after)
show("after, on other clips", saturation(model, other))
for name, d in digits(model, other).items():
    print(f"  {name}: {float((d == held_out[name]).all(1).float().mean()):.1%} of its tokens on the other clips unchanged")
info = json.loads(read_metadata(a.src).get("info", "{}"))
info = {"revived_from": a.src, "revived_from_sha256": sha256_file(a.src), "revive": vars(a) | {"channels": [r.as_dict() for r in before]},
        "before_revive": info}
print(save_checkpoint(model, a.dst, info))
