"""How far refine.soft_bits (the rate term's differentiable stand-in) is from the coded bits.

    python benchmarks/soft_bits_check.py out/val/vtest_val.mkv vidtok reftok tivtok

For the first chunk of the clip (first 16 frames, centre-cropped/resized to 256x256 as `bench
--size` does, 4 tiles) and for a constant tile (every token the same), prints per tile the
estimate and the range-coded bits of the encoder's own tokens (refine.tile_bits: each tile
coded alone).
"""

from __future__ import annotations

import argparse

import torch

import vtcodec
from vtcodec.bench.prepare import fit_size, load_clip
from vtcodec.refine import soft_bits, tile_bits
from vtcodec.tiling import TileLayout, frames_to_video


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip")
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    for key in a.models:
        m = vtcodec.load_tokenizer(key, "cpu")
        frames, _ = load_clip(a.clip, m.chunk_frames)
        tiles = TileLayout(256, 256, m.tile, 0).split(frames_to_video(fit_size(frames, 256, 256), m.chunk_frames))
        with torch.no_grad():
            latents, _ = m.encode_chunk_latents(tiles, None)
            flat = {k: torch.zeros_like(z[:1]) for k, z in latents.items()}  # one tile, every digit mid-range
            for name, lat in (("clip", latents), ("constant", flat)):
                est = sum(soft_bits(m.quant, z, tuple(m.stream_grids[k])) for k, z in lat.items())
                coded = tile_bits(m, {k: m.quant.quantize(z)[1] for k, z in lat.items()})
                print(f"{key} {name}: soft_bits {[round(v) for v in est.tolist()]}  coded {[round(v) for v in coded.tolist()]}  "
                      f"ratio {(est.double() / coded).mean():.2f}", flush=True)


if __name__ == "__main__":
    main()
