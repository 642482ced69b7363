"""Per clip, one model against another, from two `rd_sweep.py --per-clip` outputs (round 11).

    python benchmarks/rd_sweep.py out/val vidtok refine=0 --per-clip > base.txt
    python benchmarks/rd_sweep.py out/val tivtok refine=0 --per-clip > cand.txt
    python benchmarks/compare_sweeps.py base.txt cand.txt

Prints each clip's bits ratio and PSNR / SSIM differences (candidate minus base), and on how many
clips the candidate spends no more bits, and reaches at least the base's PSNR and SSIM.
"""

from __future__ import annotations

import argparse
import re

LINE = re.compile(r"\s+(\S+): bpp ([\d.]+)\s+PSNR ([\d.]+) dB\s+SSIM ([\d.]+)")


def read(path: str) -> dict[str, tuple[float, float, float]]:
    """The per-clip lines of one sweep (the first setting's, if it swept several)."""
    clips: dict[str, tuple[float, float, float]] = {}
    for line in open(path):
        if m := LINE.match(line):
            clips.setdefault(m[1], tuple(float(x) for x in m.groups()[1:]))
    return clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base")
    ap.add_argument("candidate")
    a = ap.parse_args()
    base, cand = read(a.base), read(a.candidate)
    if set(base) != set(cand) or not base:
        raise SystemExit(f"the two sweeps cover different clips: {sorted(base)} vs {sorted(cand)}")
    bits = psnr = ssim = 0
    for k in sorted(base):
        (b0, p0, s0), (b1, p1, s1) = base[k], cand[k]
        bits, psnr, ssim = bits + (b1 <= b0), psnr + (p1 >= p0), ssim + (s1 >= s0)
        print(f"{k:34s} bits x{b1 / b0:.2f}  PSNR {p1 - p0:+.2f} dB  SSIM {s1 - s0:+.4f}")
    n = len(base)
    print(f"no more bits on {bits}/{n} clips, PSNR at least the base's on {psnr}/{n}, SSIM on {ssim}/{n}")


if __name__ == "__main__":
    main()
