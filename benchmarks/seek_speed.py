"""Seconds to decode the last chunk of a file (a seek) against decoding it all, per model.

    python benchmarks/seek_speed.py out/val/vtest_val.mkv tivtok reftok vidtok [--frames 112] [--repeats 3]

Each model codes the clip's first `--frames` frames with default settings (a key chunk every 8
chunks, per-tile refresh at 1 dB); then `decode_frames(start=<first frame of the last chunk>)` is
timed against the whole decode (best of `--repeats`, model loaded once). A model whose state follows
from its key streams alone (TivTok from round 10) decodes only the last chunk and the key streams
before it; the others decode every chunk from the last key chunk on.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import vtcodec
from vtcodec.bench.clipset import ClipSet


def best(fn, repeats: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--frames", type=int, default=112)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    with ClipSet(a.video, a.frames, size=None) as cs:  # the video as it is, its first frames
        _, src, frames = cs.clips[0]
        print(f"{a.video}: {len(frames)} frames {frames.shape[2]}x{frames.shape[1]}")
        for m in a.models:
            tok = vtcodec.load_tokenizer(m)
            vtk = cs.dir / f"{m}.vtk"
            r = vtcodec.encode_file(src, vtk, model=tok, force=True)
            last = (r.chunks - 1) * tok.chunk_frames
            t_all, whole = best(lambda: vtcodec.decode_frames(vtk, model=tok), a.repeats)
            t_seek, part = best(lambda: vtcodec.decode_frames(vtk, model=tok, start=last), a.repeats)
            same = np.array_equal(part, whole[last:])
            print(f"{m:<8} {r.chunks} chunks ({r.key_chunks} key): whole {t_all:.2f} s, from frame {last} "
                  f"{t_seek:.2f} s ({t_all / t_seek:.1f}x less), frames equal to the whole decode's: {same}")


if __name__ == "__main__":
    main()
