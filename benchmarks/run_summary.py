"""Summarise a training run folder (log.jsonl + model.safetensors metadata) for a model card.

    python benchmarks/run_summary.py runs/tivtok [runs/reftok ...]

Prints the end points of the training curves, validation figures, wall time and where it went.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from vtcodec.models.registry import read_metadata


def segments(logs: list[dict]) -> list[list[dict]]:
    """Split a log into its sessions: a `--resume` restarts at the last save, so its first step is
    at or below the previous record's (the steps in between were trained twice) and its clock
    restarts at zero."""
    segs: list[list[dict]] = []
    for r in logs:
        if not segs or r["step"] <= segs[-1][-1]["step"]:
            segs.append([])
        segs[-1].append(r)
    return segs


def summary(run: Path) -> dict:
    logs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    segs = segments(logs)
    final = list({r["step"]: r for r in logs}.values())  # a step trained twice: its later record
    final.sort(key=lambda r: r["step"])
    val = [r for r in final if "val_psnr" in r]
    last = final[-1]
    tail = final[-50:]
    meta = read_metadata(run / "model.safetensors")
    batch = json.loads(meta["info"]).get("batch", 0)
    # Where the time went: per-step wall time within each session; validation steps and stalls
    # (checkpoint saves, a busy machine) show up as steps far above the median step.
    dt = [(b["step"], b["elapsed_s"] - a["elapsed_s"]) for seg in segs for a, b in zip(seg, seg[1:])]
    med = statistics.median(d for _, d in dt)
    val_steps = {r["step"] + 1 for r in val}  # validation runs after its step's record: the next step pays
    val_s = sum(max(0.0, d - med) for s, d in dt if s in val_steps)
    stall_s = sum(d - med for s, d in dt if s not in val_steps and d > 2 * med)
    wall = sum(seg[-1]["elapsed_s"] for seg in segs)
    data_s = sum(seg[-1]["data_frac"] * seg[-1]["elapsed_s"] for seg in segs)
    return {
        "run": str(run), "arch": meta["arch"], "config": json.loads(meta["config"]),
        "steps": last["step"], "sessions": len(segs), "steps_repeated": len(logs) - len(final),
        "clips_seen": last["step"] * batch,
        "wall_s": round(wall), "clips_per_s": round(len(logs) * batch / wall, 2),
        "data_fraction": round(data_s / wall, 3), "val_fraction": round(val_s / wall, 3),
        "stall_fraction": round(stall_s / wall, 3), "median_step_s": round(med, 2),
        "loss_first50": round(statistics.mean(r["loss"] for r in final[:50]), 4),
        "loss_last50": round(statistics.mean(r["loss"] for r in tail), 4),
        "ssim_last50": round(statistics.mean(r["ssim"] for r in tail), 4),
        "val_curve": [(r["step"], round(r["val_psnr"], 2), round(r["val_ssim"], 3)) for r in val],
        # `--val-codec` runs: (step, bpp, PSNR, SSIM) through the real codec
        **({"codec_curve": [(r["step"], round(r["val_codec_bpp"], 5), round(r["val_codec_psnr"], 2),
                             round(r["val_codec_ssim"], 4)) for r in val if "val_codec_bpp" in r]}
           if any("val_codec_bpp" in r for r in val) else {}),
    }


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps(summary(Path(arg))))
