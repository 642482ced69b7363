"""Two training runs that drew the same clips, compared step by step (round 14).

    python benchmarks/paired_runs.py runs/control runs/candidate [--window 200]

Runs started with the same `--seed`, `--data`, `--mix` and `--batch` (in-process sampling, no
`--workers`) train on the same clips in the same order, so at each step the two logged training
losses are measured on the same batch. Their difference (candidate minus control) is then free of
the clip-to-clip spread that swamps either curve on its own. Per window of steps this prints the
mean difference of the quality term (`mse_db`, lower is better), the training SSIM and the soft
bits, each with its standard error over the window's steps, and the validation figures both runs
logged at the same steps.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

FIELDS = (("mse_db", "MSE dB", 3), ("ssim", "SSIM", 4), ("soft_bits", "soft bits", 1))


def steps(run: Path) -> dict[int, dict]:
    """The log's records by step (a resumed run's repeated steps: the later record)."""
    return {r["step"]: r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())}


def mean_se(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1) / n) if n > 1 else math.nan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("control", type=Path)
    ap.add_argument("candidate", type=Path)
    ap.add_argument("--window", type=int, default=200)
    a = ap.parse_args()
    ctl, cand = steps(a.control), steps(a.candidate)
    both = sorted(set(ctl) & set(cand))
    if not both:
        raise SystemExit("the two runs share no logged step")
    print(f"{a.candidate} minus {a.control}, per window of {a.window} steps (mean +- standard error):")
    for lo in range(both[0], both[-1] + 1, a.window):
        w = [s for s in both if lo <= s < lo + a.window]
        if not w:
            continue
        cols = []
        for key, name, digits in FIELDS:
            d = [cand[s][key] - ctl[s][key] for s in w if key in cand[s] and key in ctl[s]]
            if d:
                m, se = mean_se(d)
                cols.append(f"{name} {m:+.{digits}f} +- {se:.{digits}f}")
        print(f"  steps {w[0]:5d}-{w[-1]:5d}: " + "  ".join(cols))
    for s in both:
        vals = {k: (ctl[s][k], cand[s][k]) for k in ctl[s]
                if k.startswith("val") and k != "val_time_s" and k in cand[s]}
        if vals:
            print(f"  validation at step {s}: " + "  ".join(f"{k} {x:.4f} -> {y:.4f}" for k, (x, y) in vals.items()))


if __name__ == "__main__":
    main()
