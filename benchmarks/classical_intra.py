"""What RefTok would gain from a classical I-frame: its reference frame coded by x265 (intra)
instead of its intra tokens, everything else as the codec does it. A planning measurement.

    python benchmarks/classical_intra.py out/val reftok --crf 32,37,42

RefTok's output follows its reference (round 5: a reference 1.6 dB worse took 1.6 dB off the
whole clip), and its intra tokens are over half its bits. Learned video codecs commonly code
their I-frames with a classical image codec (DVC used BPG). Per clip (first `--frames` frames,
centre-cropped/resized to size x size as `vtcodec bench --size` does):

* `reftok`: `vtcodec.encode_file` as shipped, per-tile refresh off (`refresh_db=inf`, so both
  arms code one reference per clip), bits from the .vtk size;
* `x265 I + tokens`: frame 0 coded by x265 (`bench.classical.encode_classical`, one frame, CRF
  N), its decoded frame cut into the codec's tiles as the reference (`state_from_reference`), then
  the codec's chunk loop with RefTok's target encoder and decoder (closed loop: each next chunk
  from the decoded last frame). Bits: the x265 bytes + each chunk's target tokens packed as the
  codec packs them (`packing.pack_streams`) + the same container overhead as the reftok file of
  that clip (header, framing, index: what the format would carry either way).

Also printed per arm: the PSNR of the reference frame itself and its bits (RefTok's intra tokens
alone, decoded by its intra decoder; x265's frame); and `copy crf N`, every frame replaced by the
x265 reference, no tokens at all: what copying the reference alone reaches. Nothing here is a format; if it pays, the
format needs a key stream that holds an image bitstream.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

import vtcodec
from vtcodec.bench.classical import encode_classical
from vtcodec.bench.metrics import psnr_rgb, ssim
from vtcodec.bench.prepare import fit_size, load_clip, write_lossless
from vtcodec.container import SHARED, VtkReader
from vtcodec.packing import pack_streams
from vtcodec.tiling import TileLayout, frames_to_video, video_to_frames
from vtcodec.video import VIDEO_EXT


def payload_bytes(vtk: Path) -> tuple[int, int]:
    """(all unit payload bytes, the key chunks' shared-unit payload bytes: RefTok's intra tokens)."""
    with VtkReader(vtk) as r:
        units = list(r.units())
    shared = sum(len(u.payload) for u in units if u.type == SHARED)
    return sum(len(u.payload) for u in units), shared


@torch.no_grad()
def intra_psnr(tok, frames: np.ndarray, layout: TileLayout) -> float:
    """PSNR of frame 0 through RefTok's intra tokens alone (its reference at a key chunk)."""
    tiles = layout.split(frames_to_video(frames[: tok.chunk_frames], tok.chunk_frames))
    ref = tok.key_image(tok.quant(tok.key_latents(tiles)))
    out = video_to_frames(layout.merge(ref[:, :, None]), 1)
    return psnr_rgb(frames[:1], out)


@torch.no_grad()
def hybrid(tok, frames: np.ndarray, layout: TileLayout, ref_frame: np.ndarray) -> tuple[np.ndarray, int]:
    """The codec's chunk loop from a given reference frame: (decoded frames, target payload bytes)."""
    f = tok.chunk_frames
    state = tok.state_from_reference(layout.split(frames_to_video(ref_frame[None], 1))[:, :, 0])
    levels, grid = tok.stream_levels["target"], tok.stream_grids["target"]
    recons, nbytes = [], 0
    for i in range(0, len(frames), f):
        tiles = layout.split(frames_to_video(frames[i:i + f], f))
        streams, _ = tok.encode_chunk(tiles, state)
        video, state = tok.decode_chunk(streams, state)
        nbytes += len(pack_streams({"target": (streams["target"].numpy(), levels, grid)}))
        recons.append(video_to_frames(layout.merge(video), min(f, len(frames) - i)))
    return np.concatenate(recons), nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("model", help="a RefTok checkpoint (key or path)")
    ap.add_argument("--crf", default="32,37,42", help="x265 CRFs for the reference frame")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args()
    tok = vtcodec.load_tokenizer(a.model, device="cpu")
    if tok.arch != "reftok":
        raise SystemExit(f"{a.model} is a {tok.arch} checkpoint; this measures RefTok's reference")
    crfs = [int(c) for c in a.crf.split(",")]
    clips = sorted(p for p in Path(a.folder).iterdir() if p.suffix.lower() in VIDEO_EXT)
    rows: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for c in clips:
            frames, info = load_clip(c, a.frames)
            src = Path(tmp) / f"{c.stem}.mkv"
            ref, _ = write_lossless(fit_size(frames, a.size, a.size), src, info.fps)
            px = ref.shape[0] * ref.shape[1] * ref.shape[2]
            layout = TileLayout(ref.shape[1], ref.shape[2], tok.tile, 0)
            vtk = Path(tmp) / "o.vtk"
            r = vtcodec.encode_file(src, vtk, model=tok, force=True, refresh_db=float("inf"))
            dec = vtcodec.decode_frames(vtk, model=tok)
            payload, intra = payload_bytes(vtk)
            overhead = r.bytes - payload
            rows.setdefault("reftok", []).append((8 * r.bytes / px, psnr_rgb(ref, dec), ssim(ref, dec),
                                                  8 * intra / px * ref.shape[0], intra_psnr(tok, ref, layout)))
            line = [f"{c.stem}: reftok {rows['reftok'][-1][0]:.5f} bpp {rows['reftok'][-1][1]:.2f} dB "
                    f"(reference {intra} B, {rows['reftok'][-1][4]:.2f} dB)"]
            for crf in crfs:
                x = encode_classical(ref[:1], info.fps, "x265", crf)
                out, tgt = hybrid(tok, ref, layout, x.decoded_frames[0])
                total = overhead + x.bitstream_bytes + tgt
                rows.setdefault(f"x265 crf {crf}", []).append(
                    (8 * total / px, psnr_rgb(ref, out), ssim(ref, out), 8 * x.bitstream_bytes / px * ref.shape[0],
                     psnr_rgb(ref[:1], x.decoded_frames[:1])))
                line.append(f"crf {crf} {rows[f'x265 crf {crf}'][-1][0]:.5f} bpp {rows[f'x265 crf {crf}'][-1][1]:.2f} dB "
                            f"(reference {x.bitstream_bytes} B, {rows[f'x265 crf {crf}'][-1][4]:.2f} dB)")
                # no tokens at all: every frame is the reference (what copying alone reaches)
                copy = np.repeat(x.decoded_frames[:1], len(ref), axis=0)
                rows.setdefault(f"copy crf {crf}", []).append(
                    (8 * (overhead + x.bitstream_bytes) / px, psnr_rgb(ref, copy), ssim(ref, copy),
                     8 * x.bitstream_bytes / px * ref.shape[0], psnr_rgb(ref[:1], x.decoded_frames[:1])))
            print("  " + "; ".join(line), flush=True)
    print(f"means over {len(clips)} clips ({a.frames} frames, {a.size}x{a.size}); reference bpp is per pixel of frame 0:")
    for name, vals in rows.items():
        bpp, p, s, ref_bpp, ref_db = np.mean(vals, axis=0)
        print(f"  {name:12s} bpp {bpp:.5f}  PSNR {p:.2f} dB  SSIM {s:.4f}   reference: {ref_bpp:.4f} bpp, {ref_db:.2f} dB")


if __name__ == "__main__":
    main()
