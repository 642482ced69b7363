"""Per clip, one model against another, from `rd_sweep.py --per-clip` outputs.

    python benchmarks/rd_sweep.py out/val vidtok refine=0 --per-clip > base.txt
    python benchmarks/rd_sweep.py out/val tivtok refine=0 --per-clip > cand.txt
    python benchmarks/compare_sweeps.py base.txt cand.txt

Prints each clip's bits ratio and PSNR / SSIM differences (candidate minus base), and on how many
clips the candidate spends no more bits, and reaches at least the base's PSNR and SSIM.

At equal bits: give the base at two or more operating points (the same model trained at
different rate slopes, say) and the candidate last,

    python benchmarks/compare_sweeps.py base_slope3.txt base_slope1.5.txt cand.txt

and each clip's base PSNR and SSIM are read off the base's curve at the candidate's bits: linear in
log(bpp) between the two operating points around them, or extended from the nearest two (marked
`*`, less trustworthy) when the candidate's bits lie outside the base's range for that clip.
"""

from __future__ import annotations

import argparse
import math
import re

LINE = re.compile(r"\s+(\S+): bpp ([\d.]+)\s+PSNR ([\d.]+) dB\s+SSIM ([\d.]+)")


def read(path: str) -> dict[str, tuple[float, float, float]]:
    """The per-clip lines of one sweep (the first setting's, if it swept several)."""
    clips: dict[str, tuple[float, float, float]] = {}
    for line in open(path):
        if m := LINE.match(line):
            clips.setdefault(m[1], tuple(float(x) for x in m.groups()[1:]))
    return clips


def at_bits(points: list[tuple[float, float, float]], bpp: float) -> tuple[float, float, bool]:
    """(PSNR, SSIM) of a curve of (bpp, PSNR, SSIM) points at `bpp`, linear in log(bpp), and whether
    that is outside the points' range (extended from the two nearest ends)."""
    pts = sorted(points)
    if len({p[0] for p in pts}) != len(pts):
        raise SystemExit(f"two operating points at the same bits {[p[0] for p in pts]}: not a curve")
    i = max(1, min(len(pts) - 1, sum(p[0] < bpp for p in pts)))
    (b0, p0, s0), (b1, p1, s1) = pts[i - 1], pts[i]
    u = math.log(bpp / b0) / math.log(b1 / b0)
    return p0 + u * (p1 - p0), s0 + u * (s1 - s0), not pts[0][0] <= bpp <= pts[-1][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", nargs="+", help="the base's sweep; several: its operating points, compared at equal bits")
    ap.add_argument("candidate")
    a = ap.parse_args()
    bases, cand = [read(p) for p in a.base], read(a.candidate)
    if any(set(b) != set(cand) for b in bases) or not cand:
        raise SystemExit(f"the sweeps cover different clips: {[sorted(b) for b in bases]} vs {sorted(cand)}")
    n = len(cand)
    if len(bases) == 1:
        base = bases[0]
        bits = psnr = ssim = 0
        for k in sorted(base):
            (b0, p0, s0), (b1, p1, s1) = base[k], cand[k]
            bits, psnr, ssim = bits + (b1 <= b0), psnr + (p1 >= p0), ssim + (s1 >= s0)
            print(f"{k:34s} bits x{b1 / b0:.2f}  PSNR {p1 - p0:+.2f} dB  SSIM {s1 - s0:+.4f}")
        print(f"no more bits on {bits}/{n} clips, PSNR at least the base's on {psnr}/{n}, SSIM on {ssim}/{n}")
        return
    dp = ds = 0.0
    psnr = ssim = outside = 0
    for k in sorted(cand):
        b1, p1, s1 = cand[k]
        p0, s0, out = at_bits([b[k] for b in bases], b1)
        dp, ds, outside = dp + p1 - p0, ds + s1 - s0, outside + out
        psnr, ssim = psnr + (p1 >= p0), ssim + (s1 >= s0)
        print(f"{k:34s} at {b1:.5f} bpp{'*' if out else ' '} PSNR {p1 - p0:+.2f} dB  SSIM {s1 - s0:+.4f}")
    print(f"at equal bits, mean over clips: PSNR {dp / n:+.2f} dB, SSIM {ds / n:+.4f}; at least the base's "
          f"PSNR on {psnr}/{n} clips, SSIM on {ssim}/{n}; {outside}/{n} outside the base's range (*)")


if __name__ == "__main__":
    main()
