"""Peak memory of encoding and decoding against video length: it should stay flat (streaming).

    python benchmarks/memory.py [--model vidtok] [--lengths 64 256 1024] [--size 128]

Each (length, phase) runs in a fresh child process so its peak RSS (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys
from pathlib import Path
import vtcodec
phase, src, vtk, model = sys.argv[1:5]
if phase == "encode":
    r = vtcodec.encode_file(src, vtk, model=model, force=True, refresh_db=None)
    extra = {"bytes": r.bytes, "seconds": r.seconds}
else:
    n = sum(len(b) for b in vtcodec.iter_decode(vtk))
    extra = {"frames": n}
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}))
"""


def synthetic(path: Path, frames: int, size: int) -> None:
    """A lossless clip of drifting colour ramps (nothing to download)."""
    from vtcodec.video import VideoWriter

    yy, xx = np.mgrid[0:size, 0:size]
    with VideoWriter(path, size, size, Fraction(25), lossless=True, force=True) as w:
        for t in range(frames):
            img = np.stack([(xx + 3 * t) % 256, (yy + 2 * t) % 256, ((xx + yy) // 2) % 256], -1).astype(np.uint8)
            w.write(img[None])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vidtok")
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--size", type=int, default=128)
    a = ap.parse_args()
    print(f"model {a.model}, {a.size}x{a.size}")
    print(f"{'frames':>8}{'video MB (raw)':>16}{'encode peak RSS MB':>20}{'decode peak RSS MB':>20}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.lengths:
            src, vtk = Path(tmp) / f"v{n}.mkv", Path(tmp) / f"v{n}.vtk"
            synthetic(src, n, a.size)
            res = {}
            for phase in ("encode", "decode"):
                out = subprocess.run([sys.executable, "-c", CHILD, phase, str(src), str(vtk), a.model],
                                     capture_output=True, text=True, check=True)
                res[phase] = json.loads(out.stdout.strip().splitlines()[-1])
            raw = n * a.size * a.size * 3 / 1e6
            print(f"{n:>8}{raw:>16.1f}{res['encode']['peak_rss_mb']:>20.0f}{res['decode']['peak_rss_mb']:>20.0f}")


if __name__ == "__main__":
    main()
