"""How many distinct codes each token stream uses per clip (round 11): a codebook-collapse check.

    python benchmarks/code_usage.py out/val_photos tivtok reftok vidtok

Each clip of the folder is coded as rd_sweep.py / bench code it (32 frames, 256x256); its tokens
are read back with `vtcodec.read_tokens` (no model involved) and counted per stream. Printed per
model: each stream's mean number of distinct codes per clip, of how many tokens, and of the FSQ
codebook's size. A stream that uses a handful of codes carries little of its own: what it cannot
take from the reference or TIV image is lost.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

import vtcodec
from vtcodec.bench.clipset import ClipSet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("models", nargs="+", help="keys or .safetensors paths")
    a = ap.parse_args()
    with ClipSet(a.folder) as cs:
        for key in a.models:
            m = vtcodec.load_tokenizer(key, "cpu")
            counts: dict[str, list[tuple[int, int]]] = {}
            for clip in cs.coded(m, decode=False):  # the tokens are all this needs
                streams: dict[str, list[np.ndarray]] = {}
                for c in vtcodec.read_tokens(clip.vtk):
                    for name, t in c.streams.items():
                        streams.setdefault(name, []).append(np.asarray(t).ravel())
                for name, parts in streams.items():
                    v = np.concatenate(parts)
                    counts.setdefault(name, []).append((len(np.unique(v)), v.size))
            levels = m.stream_levels
            text = "; ".join(f"{name}: {np.mean([u for u, _ in x]):.0f} distinct codes of {np.mean([n for _, n in x]):.0f} "
                             f"tokens (codebook {math.prod(levels[name])})" for name, x in counts.items())
            print(f"{key}: {text}")


if __name__ == "__main__":
    main()
