"""How much of encode and decode time the range coder takes (cProfile, one thread).

    python benchmarks/coder_share.py out/val/vtest_val.mkv vidtok reftok tivtok [--frames 32] [--size 256]

The clip is cut and resized as `vtcodec bench --size` prepares it, coded once to warm up, then
encoded and decoded under cProfile; printed: total time and the time inside
`vtcodec.entropy.encode` / `decode` (layout 2 of the token payloads).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
from pathlib import Path

import vtcodec
from vtcodec.bench.prepare import fit_size, load_clip, write_lossless


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    frames, info = load_clip(Path(a.clip), a.frames)
    with tempfile.TemporaryDirectory() as t:
        src = os.path.join(t, "in.mkv")
        write_lossless(fit_size(frames, a.size, a.size), Path(src), info.fps)
        for name in a.models:
            tok = vtcodec.load_tokenizer(name, device="cpu")
            vtk = os.path.join(t, f"{name}.vtk")
            vtcodec.encode_file(src, vtk, model=tok, force=True)  # warm-up
            for what, run in (("encode", lambda: vtcodec.encode_file(src, vtk, model=tok, force=True)),
                              ("decode", lambda: vtcodec.decode_frames(vtk, model=tok))):
                prof = cProfile.Profile()
                prof.enable()
                run()
                prof.disable()
                st = pstats.Stats(prof)
                coder = sum(v[3] for k, v in st.stats.items()
                            if k[0].endswith(os.path.join("vtcodec", "entropy.py")) and k[2] in ("encode", "decode"))
                print(f"{name:8s} {what}: {st.total_tt:.2f} s, range coder {coder:.3f} s "
                      f"({100 * coder / st.total_tt:.1f} %)")


if __name__ == "__main__":
    main()
