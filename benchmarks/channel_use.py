"""Per token stream and FSQ channel: is it alive, and does the decoder use it (round 12)?

    python benchmarks/channel_use.py out/val_photos tivtok vidtok runs/r12_tiv_p1/model.safetensors

Each clip of the folder is centre-cropped and resized to two tiles square (256x256 for the
shipped models' 128-px tiles) and its first chunk cut into four tiles: the key chunk a segment
starts with, every stream present. Per channel it
prints the pre-activation's mean and spread and the tanh's mean slope (`vtcodec.train.revive`: a
slope near 0 is a saturated channel no gradient reaches), the levels used, and how many dB the
decode loses when that channel alone is held at its commonest level (0: the decoder gets nothing
from it; also 0 by construction for a channel on a single level). Model-level decodes (no codec,
no range coder), PSNR over all tiles.
"""

from __future__ import annotations

import argparse

import torch

from vtcodec.bench.clipset import ClipSet
from vtcodec.models.registry import load_checkpoint, resolve_model
from vtcodec.tiling import TileLayout, frames_to_video
from vtcodec.train.losses import psnr
from vtcodec.train.revive import channel_stats


def key_tiles(folder: str, frames: int, tile: int) -> torch.Tensor:
    """Each clip's first chunk, cut by the codec's own tiler (edge to edge) into 2 x 2 tiles."""
    layout = TileLayout(2 * tile, 2 * tile, tile, 0)
    with ClipSet(folder, frames=frames, size=2 * tile) as cs:
        return torch.cat([layout.split(frames_to_video(ref, frames)) for _, _, ref in cs.clips])


@torch.no_grad()
def held_drops(m, clips: torch.Tensor) -> tuple[float, dict[tuple[str, int], float], list]:
    """-> (PSNR of the full decode, dB lost per (stream, channel) held at its commonest level,
    `channel_stats` of the same latents)."""
    latents, _ = m.encode_chunk_latents(clips, None)
    codes = {k: m.quant(z) for k, z in latents.items()}
    full = psnr(m.decode_chunk_codes(codes, None)[0], clips)
    drops = {}
    for name, c in codes.items():
        for i in range(c.shape[-1]):
            held = dict(codes)
            values, counts = c[..., i].unique(return_counts=True)
            held[name] = c.clone()
            held[name][..., i] = values[counts.argmax()]
            drops[name, i] = full - psnr(m.decode_chunk_codes(held, None)[0], clips)
    return full, drops, channel_stats(m.quant, latents)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("models", nargs="+", help="keys or .safetensors paths")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    for spec in a.models:
        m = load_checkpoint(resolve_model(spec)).eval()
        clips = key_tiles(a.folder, m.chunk_frames, m.tile)
        full, drops, stats = held_drops(m, clips)
        print(f"{spec}: {len(clips)} key-chunk tiles, {full:.2f} dB")
        for r in stats:
            print(f"  {r.stream:>7} ch{r.channel}: pre-activation {r.mean:+6.2f} +- {r.std:4.2f}, slope {r.slope:.3f}, "
                  f"{r.levels_used} levels, held: -{drops[r.stream, r.channel]:.2f} dB{'  SATURATED' if r.saturated else ''}")


if __name__ == "__main__":
    main()
