"""What quantization costs each model: its own validation with FSQ rounding, and without it.

    python benchmarks/quantizer_check.py media models/vidtok.safetensors models/reftok.safetensors ...

Runs `vtcodec train`'s validation (16 fixed clips of the validation sources, fp32) twice per
checkpoint: as trained, then with the quantizer's rounding removed (the bounded latents go to the
decoder as they are). A small gap means the rounding is not what limits quality: the bottleneck
is the latent width (FSQ channels per token) and what encoder and decoder make of it.
"""

from __future__ import annotations

import sys
import types

import torch

from vtcodec.models.registry import load_checkpoint
from vtcodec.train.data import fixed_set, load_sources
from vtcodec.train.loop import validate
from vtcodec.train.steps import CLIP_FRAMES, STEPS


def unrounded(self, z: torch.Tensor) -> torch.Tensor:
    return self.bound(z.float()) / (self._levels // 2)


def main(media: str, checkpoints: list[str]) -> None:
    val = None
    for path in checkpoints:
        model = load_checkpoint(path)
        val = fixed_set(load_sources(media, "val"), 16, CLIP_FRAMES, model.tile) if val is None else val
        row = []
        for rounding in (True, False):
            if not rounding:
                model.quant.forward = types.MethodType(unrounded, model.quant)
            v = validate(model, STEPS[model.arch], val, torch.device("cpu"), None, torch.Generator().manual_seed(0))
            row.append(f"{v['psnr']:.3f} dB / SSIM {v['ssim']:.4f}")
        print(f"{path}: quantized {row[0]}   unrounded {row[1]}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
