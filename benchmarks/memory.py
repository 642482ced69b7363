"""Peak memory of encoding and decoding against video length: it should stay flat (streaming).

    python benchmarks/memory.py [--model tivtok] [--lengths 64 512] [--size 640x360]

Each (length, phase) runs in a fresh child process so its peak RSS (ru_maxrss) is its own: the
codec's defaults (adaptive refresh included) for the encode, a decode to a .y4m file. The last
line gives the largest length's peak over the smallest's (issue 26: within 10 %).
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
    r = vtcodec.encode_file(src, vtk, model=model, force=True)
    extra = {"bytes": r.bytes, "seconds": r.seconds}
else:
    r = vtcodec.decode_file(vtk, vtk + ".y4m", force=True)
    extra = {"frames": r.frames}
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}))
"""


def synthetic(path: Path, frames: int, width: int, height: int) -> None:
    """A lossless clip of drifting colour ramps (nothing to download)."""
    from vtcodec.video import VideoWriter

    yy, xx = np.mgrid[0:height, 0:width]
    with VideoWriter(path, width, height, Fraction(25), lossless=True, force=True) as w:
        for t in range(frames):
            img = np.stack([(xx + 3 * t) % 256, (yy + 2 * t) % 256, ((xx + yy) // 2) % 256], -1).astype(np.uint8)
            w.write(img[None])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tivtok")
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    a = ap.parse_args(argv)
    width, height = (int(v) for v in a.size.lower().split("x"))
    print(f"model {a.model}, {width}x{height}")
    peaks = {}
    print(f"{'frames':>8}{'video MB (raw)':>16}{'encode peak RSS MB':>20}{'decode peak RSS MB':>20}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.lengths:
            src, vtk = Path(tmp) / f"v{n}.mkv", Path(tmp) / f"v{n}.vtk"
            synthetic(src, n, width, height)
            res = {}
            for phase in ("encode", "decode"):
                out = subprocess.run([sys.executable, "-c", CHILD, phase, str(src), str(vtk), a.model],
                                     capture_output=True, text=True, check=True)
                res[phase] = json.loads(out.stdout.strip().splitlines()[-1])
            raw = n * width * height * 3 / 1e6
            peaks[n] = (res["encode"]["peak_rss_mb"], res["decode"]["peak_rss_mb"])
            print(f"{n:>8}{raw:>16.1f}{peaks[n][0]:>20.0f}{peaks[n][1]:>20.0f}")
    lo, hi = min(peaks), max(peaks)
    print(f"{hi} frames / {lo} frames: encode {peaks[hi][0] / peaks[lo][0]:.3f}x, decode {peaks[hi][1] / peaks[lo][1]:.3f}x")


if __name__ == "__main__":
    main()
