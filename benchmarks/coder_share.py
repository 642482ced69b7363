"""How much of encode and decode time the range coder takes, and how much the networks (one thread).

    python benchmarks/coder_share.py out/val/vtest_val.mkv vidtok reftok tivtok [--frames 32] [--size 256]

The clip is cut and resized as `vtcodec bench --size` prepares it, coded once to warm up, then
encoded and decoded with `vtcodec.entropy.encode` / `decode` (layout 2 of the token payloads)
wrapped in a timer; printed: wall time of each, the time inside the range coder, and the time
inside the model's `encode_chunk` / `decode_chunk` (the networks; the rest is video I/O, tiling,
packing and the codec's own loop: what a GPU does not speed up; round 11).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import vtcodec
from vtcodec import entropy
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
    spent = [0.0, 0.0]  # range coder, networks
    depth = [0, 0]

    def timed(fn, i):
        def wrapper(*args, **kw):
            depth[i] += 1  # a call inside another timed one (an encoder that decodes) counts once
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                depth[i] -= 1
                if not depth[i]:
                    spent[i] += time.perf_counter() - t0
        return wrapper

    entropy.encode, entropy.decode = timed(entropy.encode, 0), timed(entropy.decode, 0)  # packing calls them so
    frames, info = load_clip(Path(a.clip), a.frames)
    with tempfile.TemporaryDirectory() as t:
        src = os.path.join(t, "in.mkv")
        write_lossless(fit_size(frames, a.size, a.size), Path(src), info.fps)
        for name in a.models:
            tok = vtcodec.load_tokenizer(name, device="cpu")
            tok.encode_chunk, tok.decode_chunk = timed(tok.encode_chunk, 1), timed(tok.decode_chunk, 1)
            vtk = os.path.join(t, f"{name}.vtk")
            vtcodec.encode_file(src, vtk, model=tok, force=True)  # warm-up
            for what, run in (("encode", lambda: vtcodec.encode_file(src, vtk, model=tok, force=True)),
                              ("decode", lambda: vtcodec.decode_frames(vtk, model=tok))):
                spent[:] = [0.0, 0.0]
                t0 = time.perf_counter()
                run()
                total = time.perf_counter() - t0
                print(f"{name:8s} {what}: {total:.2f} s, range coder {spent[0]:.3f} s ({100 * spent[0] / total:.1f} %), "
                      f"networks {spent[1]:.2f} s ({100 * spent[1] / total:.0f} %)")


if __name__ == "__main__":
    main()
