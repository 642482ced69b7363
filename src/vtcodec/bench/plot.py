"""Rate-distortion plot of benchmark results: bpp (log x) against PSNR, one panel per video.

Lives in ``vtcodec.bench``; needs the optional matplotlib (``pip install vtcodec[plot]``) and
draws off-screen (Agg). Each classical codec is a curve through its RD points, each model a
single marker. A codec's curve runs through its fixed-CRF RD points and the encodes its bpp
matching made, so it reaches as close to each model's bpp as the encoder can.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from vtcodec.errors import VtcodecError

_LABELS = {"psnr_rgb": "PSNR (RGB) [dB]", "psnr_y": "PSNR-Y (BT.601) [dB]"}


def require_matplotlib():
    """matplotlib.pyplot on the Agg backend, or a VtcodecError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise VtcodecError("plotting needs matplotlib: pip install vtcodec[plot]") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rd(results: dict, path: str | os.PathLike, metric: str = "psnr_rgb") -> None:
    """Write an RD plot PNG of ``results`` (from ``run_bench`` or ``jsonio.read_results``)."""
    plt = require_matplotlib()
    videos = results["videos"]
    cols = min(3, len(videos))
    rows = math.ceil(len(videos) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
    cap = 100.0  # infinite PSNR (lossless) is drawn at the cap rather than dropped
    y = lambda v: cap if v is not None and math.isinf(v) else v
    for ax, video in zip(axes.flat, videos):
        for codec, entry in video["classical"].items():
            by_crf = {p["crf"]: p for p in entry["rd_curve"]}
            for m in video["models"].values():
                match = m.get("matched", {}).get(codec, {})
                for side in ("above", "below"):
                    if match.get(side):
                        by_crf[match[side]["crf"]] = match[side]
            pts = sorted(
                (p for p in by_crf.values() if p.get(metric) is not None), key=lambda p: p["bpp"]
            )
            ax.plot([p["bpp"] for p in pts], [y(p[metric]) for p in pts], "-o", ms=3, label=codec)
        for key, m in video["models"].items():
            if m.get(metric) is not None:
                ax.plot(m["bpp"], y(m[metric]), marker="*", ms=13, ls="none", label=key)
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(_LABELS.get(metric, metric))
        ax.set_title(
            f"{os.path.basename(video['path'].rstrip('/'))}: "
            f"{video['frames']}x{video['width']}x{video['height']}",
            fontsize=10,
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(videos):]:
        ax.axis("off")
    fig.tight_layout()
    from vtcodec.atomic import replace_atomically

    try:
        replace_atomically(Path(path), lambda tmp: fig.savefig(os.fspath(tmp), dpi=120, format=Path(path).suffix[1:].lower() or "png"))
    finally:
        plt.close(fig)
