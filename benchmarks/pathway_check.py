"""Does a tokenizer use the pathway its design is about? RefTok's reference, TivTok's TV tokens.

    python benchmarks/pathway_check.py out/val models/reftok.safetensors models/tivtok.safetensors

Runs the model's forward pass on the first 32 frames of every clip in a folder (128x128 centre
crops; frames 16-31 are reconstructed, frames 0-15 supply TivTok's other chunk and RefTok's
reference) and prints PSNR with the pathway intact and knocked out:

* RefTok: the intra-coded reference (what a segment start sees), the true frame 15, a zeroed one;
  the true frame copied to every target frame (per clip too) and the learned reference gate.
* TivTok: its own TV tokens, random TV tokens, frame 0's TV tokens for every frame, and TIV
  tokens from the previous chunk (cross-chunk reuse).

* Any model (vidtok included): "colour", mean |R - G| of the intact reconstruction against the
  input's (near 0 = grey output; run it on `examples/` for colour footage).

Equal PSNRs mean the model ignores that pathway. "static" is a reference point: every frame
replaced by the clip's temporal mean (what a perfect TIV-only coder of the chunk could reach).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from vtcodec.models.registry import load_checkpoint
from vtcodec.tiling import frames_to_video
from vtcodec.video import VIDEO_EXT
from vtcodec.train.losses import psnr
from vtcodec.video import read_frames


def val_clips(folder: Path, size: int = 128, frames: int = 32) -> torch.Tensor:
    clips = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXT):
        fr = read_frames(path)
        if len(fr) < frames or min(fr.shape[1:3]) < size:
            continue
        y, x = (fr.shape[1] - size) // 2, (fr.shape[2] - size) // 2
        clips.append(frames_to_video(np.ascontiguousarray(fr[:frames, y:y + size, x:x + size]), frames))
    if not clips:
        sys.exit(f"no clip of >= {frames} frames and >= {size} px in {folder}")
    return torch.stack(clips)


@torch.no_grad()
def check(model, clip: torch.Tensor) -> dict[str, float]:
    half = clip.shape[2] // 2
    tgt = clip[:, :, half:]
    out = {"static": psnr(tgt.mean(2, keepdim=True).expand_as(tgt), tgt)}
    if model.arch in ("reftok", "tivtok2"):  # tivtok2: the reference is a TIV image
        ref = clip[:, :, half - 1]
        recon = model(tgt, ref, use_intra_ref=True)["recon"]
        out["intra ref"] = psnr(recon, tgt)
        out["true ref"] = psnr(model(tgt, ref)["recon"], tgt)
        out["zeroed ref"] = psnr(model(tgt, ref, drop=torch.ones(len(clip), dtype=torch.bool))["recon"], tgt)
        copy = ref[:, :, None].expand_as(tgt)
        out["copy of true ref"] = psnr(copy, tgt)
        true = model(tgt, ref)["recon"]  # per clip: where copying the reference beats the model
        out["per clip, true ref / copy"] = " ".join(
            f"{psnr(true[i:i + 1], tgt[i:i + 1]):.2f}/{psnr(copy[i:i + 1], tgt[i:i + 1]):.2f}" for i in range(len(clip)))
        if model.config.ref_path >= 2:
            out["ref_gate"] = float(model.ref_gate.detach())
    elif model.arch == "tivtok":
        tiv = model.quant(model.encode_tiv(tgt))
        tv = model.quant(model.encode_tv(tgt, tiv))
        g = torch.Generator().manual_seed(0)
        recon = model.decode_codes(tiv, tv)
        out["own TV"] = psnr(recon, tgt)
        out["random TV"] = psnr(model.decode_codes(tiv, model.quant(3 * torch.randn(tv.shape, generator=g))), tgt)
        out["frame-0 TV"] = psnr(model.decode_codes(tiv, tv[:, :1].expand_as(tv)), tgt)
        tiv_prev = model.quant(model.encode_tiv(clip[:, :, :half]))
        out["TIV of previous chunk"] = psnr(model.decode_codes(tiv_prev, model.quant(model.encode_tv(tgt, tiv_prev))), tgt)
    else:
        recon = model(tgt)["recon"]
        out["intact"] = psnr(recon, tgt)
    out["colour |R-G| out"] = (recon[:, 0] - recon[:, 1]).abs().mean().item()
    out["colour |R-G| in"] = (tgt[:, 0] - tgt[:, 1]).abs().mean().item()
    return out


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    clip = val_clips(Path(sys.argv[1]))
    for path in sys.argv[2:]:
        model = load_checkpoint(path)
        res = check(model, clip)
        print(f"{path} ({model.arch}, {len(clip)} clips): " + ", ".join(_fmt(k, v) for k, v in res.items()))


def _fmt(name: str, value) -> str:
    if isinstance(value, str):
        return f"{name} {value} dB"
    return f"{name} {value:.3f}" if name.startswith("colour") or name == "ref_gate" else f"{name} {value:.2f} dB"


if __name__ == "__main__":
    main()
