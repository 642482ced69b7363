"""Bits, PSNR, SSIM and encode time through the real codec path, sweeping one encoder setting.

    python benchmarks/rd_sweep.py out/val vidtok overlap=16,0
    python benchmarks/rd_sweep.py out/val reftok refine=0,20 --set refresh_db=inf
    python benchmarks/rd_sweep.py out/val path/to/candidate.safetensors overlap=0

Each clip is cut to its first `--frames` frames and centre-cropped/resized to size x size as
`vtcodec bench --size` does, then encoded with `vtcodec.encode_file(..., setting=value)` for each
value (.vtk sizes, decoded frames); per value, the means over clips are printed (and the bits
pooled over all the clips' pixels, which is what `vtcodec bench` reports), and with
`--per-clip` each clip's row too. Settings are encode_file's keyword arguments (overlap,
refresh_db, segment_chunks, refine, refine_slope, refine_lr, tile_batch); `inf` means never for refresh_db. At 256x256 with
128-px tiles an overlap of 16 needs 9 tiles and an overlap of 0 needs 4.

`--refine-only STREAM` (repeatable) makes the refinement search move only those token streams and
keep the encoder's tokens in the others (`refine_latents(only=...)`): which stream holds the gain.

    python benchmarks/rd_sweep.py out/val reftok refine=20 --refine-only intra
"""

from __future__ import annotations

import argparse
import functools

import vtcodec
import vtcodec.codec
from vtcodec import refine
from vtcodec.bench.clipset import ClipSet, summary


def _value(text: str) -> int | float:
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _setting(text: str) -> tuple[str, list]:
    name, _, values = text.partition("=")
    if not name or not values:
        raise argparse.ArgumentTypeError(f"{text!r} is not name=value[,value...]")
    return name.replace("-", "_"), [_value(v) for v in values.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("model")
    ap.add_argument("sweep", type=_setting, help="name=v1,v2,...: the encoder setting to sweep")
    ap.add_argument("--set", type=_setting, action="append", default=[], help="name=value held fixed")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--per-clip", action="store_true")
    ap.add_argument("--refine-only", action="append", metavar="STREAM", help="streams the refinement search moves")
    a = ap.parse_args()
    if a.refine_only:  # the codec calls refine_latents with its settings; this narrows what it moves
        vtcodec.codec.refine_latents = functools.partial(refine.refine_latents, only=tuple(a.refine_only))
    fixed = {k: v[0] for k, v in a.set}
    tok = vtcodec.load_tokenizer(a.model)
    name, values = a.sweep
    with ClipSet(a.folder, a.frames, a.size) as clips:
        for value in values:
            rows = []
            for r in clips.scores(tok, **{**fixed, name: value}):
                rows.append(r)
                if a.per_clip:
                    print(f"  {r.name}: bpp {r.bpp:.5f}  PSNR {r.psnr:.2f} dB  SSIM {r.ssim:.4f}  "
                          f"encode {r.encode_s:.1f} s", flush=True)
            m = summary(rows)
            extra = "".join(f" {k} {v:g}" for k, v in fixed.items()) + "".join(f" only {k}" for k in a.refine_only or ())
            print(f"{a.model} {name} {value:g}{extra}: {len(rows)} clips, bpp {m['bpp']:.5f}  PSNR {m['psnr']:.2f} dB  "
                  f"SSIM {m['ssim']:.4f}  encode {m['encode_s']:.1f} s/clip  (pooled over pixels, as bench: bpp "
                  f"{m['bpp_pooled']:.5f})", flush=True)

if __name__ == "__main__":
    main()
