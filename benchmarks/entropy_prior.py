"""What a static entropy model would save over today's zstd packing: a planning measurement.

    python benchmarks/entropy_prior.py media out/val reftok vidtok tivtok [--windows 3] [--frames 32] [--size 256]

For each model: code `--windows` 32-frame windows of every training video (the train split of
`vtcodec.train.data`, centre-cropped/resized to size x size) and count each stream's token
indices: that is the prior, known to encoder and decoder alike if it shipped with the checkpoint.
Then code the validation clips (first `--frames` frames, as `vtcodec bench --size` prepares them)
and compare, per stream, the bits each chunk's stream takes packed on its own in the better zstd
layout (`zstd`, packing version 1's choice) and in the range-coded layout 2 (`range`, with the
model's stream grid; also timed, encode + decode, per digit) with the ideal code length under the
prior: the joint index with 1 % of the mass spread uniformly over the codebook (`joint`), and a
per-FSQ-digit product of add-one-smoothed marginals (`digits`); and, needing no prior, an
adaptive model that learns as it codes each payload (`adaptive`: the index's digits, most
significant first, each coded with counts kept per prefix of the digits before it, so a joint
model whose unseen symbols cost about log2 of the codebook). No arithmetic coder is built; an
ideal code length is what one would approach. Also printed: how many distinct codes each stream
uses per clip, and how much of the files lies outside the unit payloads (the container's header,
unit framing and index).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import vtcodec
from vtcodec import entropy
from vtcodec.entropy import split_digits as digits
from vtcodec.bench.prepare import fit_size, load_clip, write_lossless
from vtcodec.container import VtkReader
from vtcodec.packing import pack_streams
from vtcodec.train.data import load_sources
from vtcodec.video import VIDEO_EXT


def adaptive_bits(idx: np.ndarray, levels: list[int], inc: float = 4.0, init: float = 0.5) -> float:
    """Ideal code length of `idx` under the adaptive digit-tree model (counts start at `init`)."""
    counts: dict[tuple, list[float]] = {}
    bits = 0.0
    rows = np.stack(digits(idx.ravel(), levels)[::-1], axis=1).tolist()  # most significant digit first
    for row in rows:
        prefix: tuple = ()
        for lv, d in zip(levels[::-1], row):
            c = counts.setdefault(prefix, [init] * lv)
            bits -= math.log2(c[d] / sum(c))
            c[d] += inc
            prefix += (d,)
    return bits


def code(tok, frames: np.ndarray, fps, tmp: Path):
    """-> (chunks, file bits, bits outside the unit payloads: preamble, header, framing, index)."""
    src, vtk = tmp / "in.mkv", tmp / "o.vtk"
    write_lossless(frames, src, fps)
    r = vtcodec.encode_file(src, vtk, model=tok, force=True)
    with VtkReader(vtk) as rd:
        payload = sum(len(u.payload) for u in rd.units())
    return list(vtcodec.read_tokens(vtk)), 8 * r.bytes, 8 * (r.bytes - payload)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("media")
    ap.add_argument("val")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args()
    train_videos = load_sources(a.media, "train").videos
    val_clips = sorted(p for p in Path(a.val).iterdir() if p.suffix.lower() in VIDEO_EXT)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for name in a.models:
            tok = vtcodec.load_tokenizer(name, device="cpu")
            counts: dict[str, np.ndarray] = {}
            levels = tok.stream_levels
            for v in train_videos:
                starts = np.linspace(0, max(0, len(v) - a.frames), a.windows).astype(int)
                for s in starts:
                    for c in code(tok, fit_size(v[s:s + a.frames], a.size, a.size), 25, tmp)[0]:
                        for k, arr in c.streams.items():
                            n = math.prod(levels[k])
                            counts.setdefault(k, np.zeros(n, np.int64))
                            counts[k] += np.bincount(arr.ravel(), minlength=n)
            prior = {}  # stream -> (joint probabilities, per-digit probabilities)
            for k, cnt in counts.items():
                marg = [np.bincount(dv, weights=cnt, minlength=lv) + 1
                        for dv, lv in zip(digits(np.arange(len(cnt)), levels[k]), levels[k])]
                prior[k] = (0.99 * cnt / cnt.sum() + 0.01 / len(cnt), [m / m.sum() for m in marg])
            now, joint, dig, adapt = defaultdict(float), defaultdict(float), defaultdict(float), defaultdict(float)
            ranged, coder_s, coder_digits = defaultdict(float), 0.0, 0
            ntok, distinct = defaultdict(int), defaultdict(list)
            file_bits = outside = 0
            for clip in val_clips:
                frames, info = load_clip(clip, a.frames)
                chunks, bits, extra = code(tok, fit_size(frames, a.size, a.size), info.fps, tmp)
                file_bits, outside = file_bits + bits, outside + extra
                seen = defaultdict(set)
                for c in chunks:
                    for k, arr in c.streams.items():
                        flat, lv = arr.ravel(), levels[k]
                        p_joint, p_digits = prior[k]
                        joint[k] += float(-np.log2(p_joint[flat]).sum())
                        dig[k] += float(sum(-np.log2(pd[dv]).sum() for pd, dv in zip(p_digits, digits(flat, lv))))
                        now[k] += 8 * min(len(pack_streams({k: (arr, lv)}, layout=lay)) for lay in ("planes", "bits"))
                        ranged[k] += 8 * len(pack_streams({k: (arr, lv, tok.stream_grids[k])}, layout="range"))
                        t0 = time.perf_counter()
                        entropy.decode(entropy.encode(flat, lv, tok.stream_grids[k]), flat.size, lv, tok.stream_grids[k])
                        coder_s, coder_digits = coder_s + time.perf_counter() - t0, coder_digits + flat.size * len(lv)
                        adapt[k] += adaptive_bits(arr, lv)
                        ntok[k] += arr.size
                        seen[k].update(flat.tolist())
                for k, codes in seen.items():
                    distinct[k].append(len(codes))
            for k in sorted(ntok):
                n = ntok[k]
                print(f"{name:8s} {k:7s} {n:7d} val tokens  packed alone: zstd {now[k] / n:5.2f}, range {ranged[k] / n:5.2f} "
                      f"({100 * (ranged[k] / now[k] - 1):+.0f} %) bits/token  "
                      f"prior joint {joint[k] / n:5.2f}  digits {dig[k] / n:5.2f}  adaptive {adapt[k] / n:5.2f}  "
                      f"distinct codes per clip {min(distinct[k])}-{max(distinct[k])}")
            total = sum(joint.values())
            print(f"{name:8s} all     .vtk files {file_bits / 1e3:.1f} kbit, of which outside the unit payloads "
                  f"{outside / 1e3:.1f} ({100 * outside / file_bits:.0f} %; {outside / 8 / len(val_clips):.0f} bytes a file); "
                  f"streams packed alone {sum(now.values()) / 1e3:.1f} (zstd) / {sum(ranged.values()) / 1e3:.1f} (range), "
                  f"under the joint prior {total / 1e3:.1f}; range coder {1e6 * coder_s / coder_digits:.2f} us per digit "
                  f"(encode + decode)")

if __name__ == "__main__":
    main()
