"""How much of encode and decode time the range coder takes, and how much the networks (one thread).

    python benchmarks/coder_share.py out/val/vtest_val.mkv vidtok reftok tivtok [--frames 32] [--size 256]

The clip is cut and resized as `vtcodec bench --size` prepares it, coded once to warm up, then
encoded and decoded with `vtcodec.entropy.encode` / `decode` (layout 2 of the token payloads)
wrapped in a timer; printed: wall time of each, the time inside the range coder, and the time
inside the model's `encode_chunk` / `decode_chunk` (the networks), and the time the encoder spends
reading the source video (probe and decoding to RGB). What is left over is tiling, packing and the
codec's own loop; everything but the networks is what a GPU does not speed up (round 11).
"""

from __future__ import annotations

import argparse
import time

import vtcodec
from vtcodec import codec, entropy
from vtcodec.bench.clipset import ClipSet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    spent = [0.0, 0.0, 0.0]  # range coder, networks, reading the source video (probe + decode to RGB)
    depth = [0, 0, 0]

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

    def timed_reader(fn, i):  # a function returning an iterator: its call and every next() count
        def wrapper(*args, **kw):
            t0 = time.perf_counter()
            it = fn(*args, **kw)
            spent[i] += time.perf_counter() - t0
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    spent[i] += time.perf_counter() - t0
                    return
                spent[i] += time.perf_counter() - t0
                yield item
        return wrapper

    entropy.encode, entropy.decode = timed(entropy.encode, 0), timed(entropy.decode, 0)  # packing calls them so
    codec.probe, codec.read_chunks = timed(codec.probe, 2), timed_reader(codec.read_chunks, 2)  # encode_file's reads
    with ClipSet(a.clip, a.frames, a.size) as cs:
        _, src, _ = cs.clips[0]
        for name in a.models:
            tok = vtcodec.load_tokenizer(name, device="cpu")
            tok.encode_chunk, tok.decode_chunk = timed(tok.encode_chunk, 1), timed(tok.decode_chunk, 1)
            vtk = cs.dir / f"{name}.vtk"
            vtcodec.encode_file(src, vtk, model=tok, force=True)  # warm-up
            for what, run in (("encode", lambda: vtcodec.encode_file(src, vtk, model=tok, force=True)),
                              ("decode", lambda: vtcodec.decode_frames(vtk, model=tok))):
                spent[:] = [0.0, 0.0, 0.0]
                t0 = time.perf_counter()
                run()
                total = time.perf_counter() - t0
                print(f"{name:8s} {what}: {total:.2f} s, range coder {spent[0]:.3f} s ({100 * spent[0] / total:.1f} %), "
                      f"networks {spent[1]:.2f} s ({100 * spent[1] / total:.0f} %), "
                      f"reading the video {spent[2]:.2f} s ({100 * spent[2] / total:.0f} %)")

if __name__ == "__main__":
    main()
