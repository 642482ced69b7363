"""Would a richer context help the range coder? Ideal code lengths of a model's token streams on
the validation clips under the coder's adaptive tables with other contexts. A planning measurement.

    python benchmarks/intra_contexts.py [reftok]   # clips from out/val

Each val clip (first 32 frames, 256x256 as `vtcodec bench --size` prepares them) is encoded as
shipped; then each chunk's stream, as one payload, is coded in the ideal (entropy) sense with the
adaptive frequency tables of `vtcodec.entropy` (start 2, +5 per symbol, halved past 2**13), per
digit, under four contexts: `current` (entropy.py's: the same digit of the temporal neighbour, or
of the left and upper ones in the first step), `+prev digit` (also the token's previous digit),
`nbsum` (the sum of left and upper instead of the pair) and `nbsum+prev`. Bits per token, means
over the clips' payloads.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import numpy as np

import vtcodec
from vtcodec.bench.prepare import fit_size, load_clip, write_lossless
from vtcodec.entropy import INC, INIT, LIMIT, split_digits


def clip_payloads(tok, folder: Path) -> dict[str, list[np.ndarray]]:
    """stream -> one (tiles, T, H, W) index array per chunk payload, over the folder's clips."""
    out: dict[str, list[np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for c in sorted(folder.glob("*.mkv")):
            frames, info = load_clip(c, 32)
            src = tmp / f"{c.stem}.mkv"
            write_lossless(fit_size(frames, 256, 256), src, info.fps)
            vtcodec.encode_file(src, tmp / "o.vtk", model=tok, force=True)
            for ch in vtcodec.read_tokens(tmp / "o.vtk"):
                for k, arr in ch.streams.items():
                    out.setdefault(k, []).append(np.asarray(arr).reshape(-1, *tok.stream_grids[k]))
    return out


def ideal_bits(payloads: list[np.ndarray], levels: list[int], context) -> tuple[float, int]:
    """(bits per token, tokens): ideal code length under adaptive tables keyed by context(...)."""
    bits, n = 0.0, 0
    for arr in payloads:
        d = np.stack(split_digits(arr.astype(np.int64), levels), -1)  # (G, T, H, W, m)
        tables: dict[tuple, list[int]] = {}
        for g, t, y, x in np.ndindex(*d.shape[:4]):
            n += 1
            for i in range(d.shape[4]):
                key = (i,) + context(d, g, t, y, x, i)
                f = tables.setdefault(key, [INIT] * levels[i])
                s, tot = d[g, t, y, x, i], sum(f)
                bits -= math.log2(f[s] / tot)
                f[s] += INC
                if tot + INC > LIMIT:
                    tables[key] = [(v + 1) >> 1 for v in f]
    return bits / n, n


def current(d, g, t, y, x, i):
    if t:
        return (0, d[g, t - 1, y, x, i])
    return (1, d[g, t, y, x - 1, i] if x else -1, d[g, t, y - 1, x, i] if y else -1)


def with_prev_digit(d, g, t, y, x, i):
    return current(d, g, t, y, x, i) + ((d[g, t, y, x, i - 1],) if i else (-1,))


def neighbour_sum(d, g, t, y, x, i):
    if t:
        return (0, d[g, t - 1, y, x, i])
    near = [v for v, ok in ((d[g, t, y, x - 1, i], x), (d[g, t, y - 1, x, i], y)) if ok]
    return (1, sum(near) * (2 // len(near)) if near else -1)  # one neighbour counts twice


def neighbour_sum_prev(d, g, t, y, x, i):
    return neighbour_sum(d, g, t, y, x, i) + ((d[g, t, y, x, i - 1],) if i else (-1,))


def main() -> None:
    tok = vtcodec.load_tokenizer(sys.argv[1] if len(sys.argv) > 1 else "reftok", device="cpu")
    payloads = clip_payloads(tok, Path("out/val"))
    for k, arrays in payloads.items():
        for name, fn in (("current", current), ("+prev digit", with_prev_digit), ("nbsum", neighbour_sum),
                         ("nbsum+prev", neighbour_sum_prev)):
            b, n = ideal_bits(arrays, tok.stream_levels[k], fn)
            print(f"{k:7s} {name:12s} {b:6.3f} bits/token over {n} tokens", flush=True)


if __name__ == "__main__":
    main()
