"""Score checkpoints on a training run's own validation set (as `vtcodec train` builds it today).

    python benchmarks/revalidate.py media models/superseded/tivtok-r1.safetensors models/tivtok.safetensors

A run's log holds the validation figures of *its* code version; when the sampler changes (round
1's logs predate a change in how synthetic hard cases draw their parameters), checkpoints are only
comparable when scored again on one fixed set. Prints PSNR / SSIM per checkpoint.
"""

from __future__ import annotations

import sys

import torch

from vtcodec.models.registry import load_checkpoint
from vtcodec.train.data import fixed_set, load_sources
from vtcodec.train.loop import TrainOptions, validate
from vtcodec.train.steps import CLIP_FRAMES, STEPS


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sources = load_sources(sys.argv[1], "val")
    sets: dict[int, torch.Tensor] = {}
    for path in sys.argv[2:]:
        model = load_checkpoint(path)
        if model.tile not in sets:
            sets[model.tile] = fixed_set(sources, TrainOptions.val_clips, CLIP_FRAMES, model.tile)
        v = validate(model, STEPS[model.arch], sets[model.tile], torch.device("cpu"), None, torch.Generator().manual_seed(0))
        print(f"{path}: val PSNR {v['psnr']:.2f} dB, SSIM {v['ssim']:.3f}")


if __name__ == "__main__":
    main()
