"""The validation report of issue 25: every model change is judged by this table.

    python -m vtcodec.bench.valset MEDIA out/val25                  # the clips, once
    python benchmarks/validate.py out/val25 --model tivtok,vidtok --classical [--json out/val25.json]
    python benchmarks/validate.py out/val25 --model new.safetensors --quality 0,1,2,3

For each clip of VAL_DIR (*.mkv/*.mp4, sorted) and each model -- an installed key (`vtcodec
models`, `$VTCODEC_MODELS` adds a directory) or a .safetensors path -- the clip goes through the
real codec (`encode_file` to a .vtk, `decode_frames` back) at the codec's defaults, once per
`--quality` where the model has `QUALITIES > 0`, once otherwise. Printed per clip, then the mean
over clips:

  bpp       8 * (.vtk file size) / (frames * width * height)
  PSNR      RGB PSNR (dB, one pooled MSE);   SSIM: BT.601-luma SSIM (vtcodec.bench.metrics)
  Cb/Cr     PSNR of Cb and of Cr (BT.601 full range)
  spread    output chroma spread / input chroma spread (1.00 = colour kept; < 1 washed out)
  seam      seam score at 128-pixel tiles (1.00 = no grid; the input's own is in the clip header)
  grid      the same at every 16-pixel line (ConvTok's token grid, and where a decoder's x2 pixel
            shuffles leave a lattice): averaged over many lines, so it moves less with content
  thumb     the clip's thumbnail floor: frames shrunk 16x per side and scaled back (dB)
  x264*/av1*  with --classical: the codec at its best resolution for the rate -- the clip shrunk
            to 1, 1/2 and 1/4 per side (area), encoded (CRF bisected until two adjacent CRFs bracket
            the model's bpp), decoded, scaled back (bicubic), PSNR read at the model's bpp linearly
            in log bpp; the best of the three, "@1/2" saying which; "-" when no resolution reaches it.

With two models or more, an equal-bits section follows: for every model after the first, its
PSNR minus the first model's PSNR read at the same bpp, per clip (`equal_bits`: linear in log
bpp between the first model's points; "~" marks a value extrapolated beyond them; a single point
counts only within EQUAL_BPP of the other's bpp).

Everything runs on the CPU; the machine is usually shared, so times are indicative only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vtcodec.bench import metrics
from vtcodec.bench.classical import bpp as classical_bpp
from vtcodec.bench.classical import crf_range, encode_classical
from vtcodec.codec import decode_frames, encode_file, load_tokenizer
from vtcodec.errors import VtcodecError
from vtcodec.video import probe, read_frames

SCALES = (1, 2, 4)  # classical anchors at native, 1/2 and 1/4 resolution per side
CODEC_NAMES = {"x264": "x264", "av1": "SVT-AV1"}
EQUAL_BPP = 0.05  # a single point stands for another at most 5 % away in bpp
THUMB_FACTOR = 16
SEAM_TILE = 128  # today's tile; a whole-frame model must show no step there either
GRID = 16        # the token grid of whole-frame models


# --- reading a curve at a bit rate ------------------------------------------------------------


def at_bpp(points: list[tuple[float, float]], bpp: float) -> tuple[float | None, bool]:
    """A curve's value at `bpp`, linear in log bpp: (value, extrapolated).

    `points` are (bpp, value) pairs in any order. Between two points the segment around `bpp` is
    used; beyond the ends the nearest segment is extended and flagged. One point answers only
    within EQUAL_BPP of it (value, False); otherwise (None, True).
    """
    pts = sorted((b, v) for b, v in points if b > 0 and v is not None and math.isfinite(v))
    if not pts or not bpp > 0:
        return None, True
    if len(pts) == 1:
        b, v = pts[0]
        return (v, False) if abs(bpp / b - 1) <= EQUAL_BPP else (None, True)
    xs = [math.log(b) for b, _ in pts]
    x = math.log(bpp)
    i = int(np.searchsorted(xs, x))
    outside = not xs[0] <= x <= xs[-1]
    i = min(max(i, 1), len(pts) - 1)
    (x0, v0), (x1, v1) = (xs[i - 1], pts[i - 1][1]), (xs[i], pts[i][1])
    if x1 == x0:
        return (v0 + v1) / 2, outside
    return v0 + (x - x0) / (x1 - x0) * (v1 - v0), outside


def equal_bits(base: dict[str, list[tuple[float, float]]],
               other: dict[str, list[tuple[float, float]]]) -> dict[str, list[dict]]:
    """Per clip, for each (bpp, PSNR) point of `other`: its PSNR minus `base`'s at the same bpp.

    Returns {clip: [{"bpp", "psnr", "base_psnr", "delta_db", "extrapolated"}]}; delta_db is None
    where `base` cannot be read at that bpp (see `at_bpp`). Clips missing from `base` are skipped.
    """
    out = {}
    for clip, pts in other.items():
        if clip not in base:
            continue
        rows = []
        for b, p in sorted(pts):
            ref, ext = at_bpp(base[clip], b)
            rows.append({"bpp": b, "psnr": p, "base_psnr": ref, "extrapolated": ext,
                         "delta_db": None if ref is None else p - ref})
        out[clip] = rows
    return out


def summarise(cmp: dict[str, list[dict]]) -> dict | None:
    """One figure for a curve against a curve: per clip the mean delta_db of the points read inside
    the base curve (not extrapolated), then the mean over clips, the clips at or above 0 and the
    worst clip. None when no clip has such a point."""
    per = {c: [p["delta_db"] for p in pts if p["delta_db"] is not None and not p["extrapolated"]]
           for c, pts in cmp.items()}
    per = {c: sum(d) / len(d) for c, d in per.items() if d}
    if not per:
        return None
    return {"mean_db": sum(per.values()) / len(per), "at_or_above": sum(d >= 0 for d in per.values()),
            "clips": len(per), "worst_db": min(per.values())}


# --- classical codecs at their best resolution -------------------------------------------------


class ScaledAnchor:
    """One classical codec on one clip shrunk `scale` x per side; encodes memoised by CRF.

    bpp counts the bits against the clip's native pixels; PSNR compares the decoded frames scaled
    back to native size with the native clip.
    """

    def __init__(self, frames: np.ndarray, fps, codec: str, scale: int):
        t, h, w, _ = frames.shape
        self.frames, self.fps, self.codec, self.scale = frames, fps, codec, scale
        self.small = frames if scale == 1 else metrics.resize_frames(
            frames, max(2, round(h / scale)), max(2, round(w / scale)), "area")
        self.sizes: dict[int, float] = {}
        self.decoded: dict[int, np.ndarray] = {}
        self.psnrs: dict[int, float] = {}

    def bpp(self, crf: int) -> float:
        if crf not in self.sizes:
            r = encode_classical(self.small, self.fps, self.codec, crf)
            t, h, w, _ = self.frames.shape
            self.sizes[crf] = classical_bpp(r.bitstream_bytes, t, w, h)
            self.decoded[crf] = r.decoded_frames
        return self.sizes[crf]

    def psnr(self, crf: int) -> float:
        if crf not in self.psnrs:
            self.bpp(crf)
            _, h, w, _ = self.frames.shape
            d = self.decoded[crf]
            up = d if d.shape == self.frames.shape else metrics.resize_frames(d, h, w, "bicubic")
            self.psnrs[crf] = metrics.psnr_rgb(self.frames, up)
        return self.psnrs[crf]

    def at(self, target: float) -> float | None:
        """PSNR at `target` bpp between the two adjacent CRFs that bracket it; None if out of reach."""
        lo, b = crf_range(self.codec)  # lo: biggest files, b: smallest
        if self.bpp(b) > target:
            return None
        a = lo
        while b - a > 1:  # invariant: bpp(a) >= target (checked below when a stays lo) >= bpp(b)
            m = (a + b) // 2
            if self.bpp(m) >= target:
                a = m
            else:
                b = m
        if a == lo and self.bpp(lo) < target:  # the slow near-lossless encode, only when needed
            return None
        value, _ = at_bpp([(self.bpp(a), self.psnr(a)), (self.bpp(b), self.psnr(b))], target)
        if value is None:  # equal sizes at adjacent CRFs
            value = max(self.psnr(a), self.psnr(b))
        return value


def best_resolution(anchors: list[ScaledAnchor], target: float) -> tuple[float | None, int | None]:
    """(PSNR, scale) of the best of the anchors at `target` bpp; (None, None) if none reaches it."""
    best: tuple[float | None, int | None] = (None, None)
    for a in anchors:
        try:
            p = a.at(target)
        except (VtcodecError, ValueError, OSError) as e:  # e.g. an encoder refusing a tiny frame
            print(f"  note: {a.codec} at 1/{a.scale}: {e}", file=sys.stderr)
            continue
        if p is not None and (best[0] is None or p > best[0]):
            best = (p, a.scale)
    return best


# --- the report --------------------------------------------------------------------------------


@dataclass
class Row:
    clip: str
    model: str
    quality: int | None
    bpp: float
    psnr: float
    ssim: float
    cb_psnr: float
    cr_psnr: float
    spread_ratio: float
    seam: float
    grid: float
    encode_s: float
    decode_s: float
    classical: dict = field(default_factory=dict)  # codec -> {"psnr", "scale", "gap_db": model minus codec}


@dataclass
class Clip:
    name: str
    frames: np.ndarray
    fps: object
    spread: float
    seam_in: float
    grid_in: float
    thumb: float


def load_clip(path: Path) -> Clip:
    frames = read_frames(path)
    return Clip(path.stem, frames, probe(path).fps, metrics.chroma_spread(frames),
                metrics.seam_score(frames, SEAM_TILE), metrics.seam_score(frames, GRID),
                metrics.thumbnail_floor(frames, THUMB_FACTOR))


def run_model(clip: Clip, path: Path, tok, label: str, quality: int | None, work: Path) -> Row:
    vtk = work / f"{clip.name}.vtk"
    extra = {} if quality is None else {"quality": quality}
    enc = encode_file(path, vtk, model=tok, device="cpu", force=True, **extra)
    t0 = time.perf_counter()
    out = decode_frames(vtk, device="cpu", model=tok)
    dec_s = time.perf_counter() - t0
    cb, cr = metrics.chroma_psnr(clip.frames, out)
    return Row(clip.name, label, quality, enc.bpp, metrics.psnr_rgb(clip.frames, out),
               metrics.ssim(clip.frames, out), cb, cr,
               metrics.chroma_spread(out) / clip.spread if clip.spread > 0 else math.nan,
               metrics.seam_score(out, SEAM_TILE), metrics.seam_score(out, GRID), enc.seconds, dec_s)


def _f(x, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _table(rows: list[Row], codecs: list[str]) -> list[str]:
    head = f"  {'model':<14}{'bpp':>9}{'PSNR':>7}{'SSIM':>8}{'Cb':>7}{'Cr':>7}{'spread':>8}{'seam':>7}{'grid':>6}"
    head += "".join(f"{CODEC_NAMES[c] + '*':>13}" for c in codecs) + f"{'enc s':>8}{'dec s':>7}"
    lines = [head]
    for r in rows:
        name = r.model if r.quality is None else f"{r.model} q{r.quality}"
        s = (f"  {name:<14}{r.bpp:>9.5f}{r.psnr:>7.2f}{r.ssim:>8.4f}{r.cb_psnr:>7.2f}{r.cr_psnr:>7.2f}"
             f"{_f(r.spread_ratio, '.2f'):>8}{_f(r.seam, '.2f'):>7}{_f(r.grid, '.2f'):>6}")
        for c in codecs:
            a = r.classical.get(c) or {}
            cell = "-" if a.get("psnr") is None else f"{a['psnr']:.2f}"
            if a.get("psnr") is not None and a.get("scale"):
                cell += f"@1/{a['scale']}"
            s += f"{cell:>13}"
        lines.append(s + f"{r.encode_s:>8.1f}{r.decode_s:>7.1f}")
    return lines


def _nanmean(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return float(np.mean(xs)) if xs else math.nan


def _mean_rows(rows: list[Row], codecs: list[str]) -> list[Row]:
    """One row per (model, quality): the mean over clips (classical: only where every clip reached it)."""
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault((r.model, r.quality), []).append(r)
    out = []
    for (model, q), rs in groups.items():
        m = {k: _nanmean([getattr(r, k) for r in rs]) for k in
             ("bpp", "psnr", "ssim", "cb_psnr", "cr_psnr", "spread_ratio", "seam", "grid", "encode_s", "decode_s")}
        cl = {}
        for c in codecs:
            ps = [r.classical[c]["psnr"] for r in rs if r.classical.get(c, {}).get("psnr") is not None]
            p = float(np.mean(ps)) if len(ps) == len(rs) else None
            cl[c] = {"psnr": p, "scale": None, "gap_db": None if p is None else m["psnr"] - p}
        out.append(Row("mean", model, q, classical=cl, **m))
    return out


def report(val_dir: Path, models: list[str], qualities: list[int] | None, codecs: list[str],
           log=print) -> dict:
    if not val_dir.is_dir():
        raise VtcodecError(f"validation folder not found: {val_dir} (make it with python -m vtcodec.bench.valset)")
    paths = sorted(p for p in val_dir.iterdir() if p.suffix.lower() in (".mkv", ".mp4"))
    if not paths:
        raise VtcodecError(f"no .mkv or .mp4 clips in {val_dir} (make them with python -m vtcodec.bench.valset)")
    toks = [load_tokenizer(m, "cpu") for m in models]
    keys = [t.key for t in toks]  # two checkpoints of one key (shipped and a candidate): add the hash
    labels = [k if keys.count(k) == 1 else f"{k}@{t.sha256[:8]}" for k, t in zip(keys, toks)]
    rows: list[Row] = []
    clips: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="vtcodec-validate-") as tmp:
        for path in paths:
            clip = load_clip(path)
            t, h, w, _ = clip.frames.shape
            clips[clip.name] = {"frames": t, "width": w, "height": h, "chroma_spread": clip.spread,
                                "seam_input": clip.seam_in, "grid_input": clip.grid_in, "thumbnail_floor": clip.thumb}
            anchors = {c: [ScaledAnchor(clip.frames, clip.fps, c, s) for s in SCALES] for c in codecs}
            clip_rows = []
            for tok, label in zip(toks, labels):
                n_q = int(getattr(tok, "QUALITIES", 0) or 0)
                qs = [q for q in qualities if 0 <= q < n_q] if (qualities is not None and n_q > 0) else [None]
                for q in qs:
                    r = run_model(clip, path, tok, label, q, Path(tmp))
                    for c, an in anchors.items():
                        p, s = best_resolution(an, r.bpp)
                        r.classical[c] = {"psnr": p, "scale": s, "gap_db": None if p is None else r.psnr - p}
                    clip_rows.append(r)
            rows += clip_rows
            log(f"\n{clip.name}: {t} frames {w}x{h}, thumbnail floor {clip.thumb:.2f} dB, "
                f"input chroma spread {clip.spread:.1f}, input seam {_f(clip.seam_in, '.2f')}, grid {_f(clip.grid_in, '.2f')}")
            for line in _table(clip_rows, codecs):
                log(line)
    means = _mean_rows(rows, codecs)
    log(f"\nmean over {len(paths)} clips (thumbnail floor {np.mean([c['thumbnail_floor'] for c in clips.values()]):.2f} dB)")
    for line in _table(means, codecs):
        log(line)
    below = [(r.clip, r.model) for r in rows if r.psnr < clips[r.clip]["thumbnail_floor"]]
    if below:
        log(f"below the thumbnail floor: {', '.join(f'{m} on {c}' for c, m in below)}")
    if codecs:
        log(f"\ngap to the classical codecs at their best resolution, equal bits (model minus codec, dB)")
        for r in rows + means:
            name = r.model if r.quality is None else f"{r.model} q{r.quality}"
            cells = [f"{CODEC_NAMES[c]} {_f(r.classical[c]['gap_db'], '+.2f')}" for c in codecs]
            log(f"  {r.clip:<24}{name:<14}{'  '.join(cells)}")
    comparisons = {}
    if len(toks) > 1:
        def curves(key):
            d: dict[str, list] = {}
            for r in rows:
                if r.model == key:
                    d.setdefault(r.clip, []).append((r.bpp, r.psnr))
            return d
        base = labels[0]
        for label in labels[1:]:
            cmp = equal_bits(curves(base), curves(label))
            comparisons[f"{label} - {base}"] = cmp
            log(f"\nequal bits: {label} minus {base} (PSNR dB at {label}'s bpp; ~ extrapolated)")
            for clip, pts in cmp.items():
                cells = [("-" if p["delta_db"] is None else f"{'~' if p['extrapolated'] else ''}{p['delta_db']:+.2f}")
                         + f" at {p['bpp']:.4f}" for p in pts]
                log(f"  {clip:<24}{'  '.join(cells)}")
            sm = summarise(cmp)
            if sm is not None:
                log(f"  mean over clips (points inside {base}'s range): {sm['mean_db']:+.2f} dB, at or above on "
                    f"{sm['at_or_above']}/{sm['clips']}, worst {sm['worst_db']:+.2f}")
    return {"clips": clips, "rows": [asdict(r) for r in rows], "mean": [asdict(r) for r in means],
            "equal_bits": comparisons, "codecs": codecs, "scales": list(SCALES)}


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("val_dir", type=Path)
    ap.add_argument("--model", required=True, help="model keys or .safetensors paths, comma-separated")
    ap.add_argument("--quality", type=_ints, default=None, help="qualities for models with QUALITIES > 0, e.g. 0,1,2,3")
    ap.add_argument("--classical", action="store_true", help="add the classical codecs at their best resolution")
    ap.add_argument("--codecs", default="x264,av1", help="with --classical: which (x264, av1)")
    ap.add_argument("--json", type=Path, default=None, help="also write every number here")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = ap.parse_args(argv)
    codecs = [c for c in a.codecs.split(",") if c] if a.classical else []
    for c in codecs:
        if c not in CODEC_NAMES:
            ap.error(f"--codecs: unknown codec {c!r}; choose from {', '.join(CODEC_NAMES)}")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    try:
        res = report(a.val_dir, [m for m in a.model.split(",") if m], a.quality, codecs)
    except VtcodecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1, default=str, allow_nan=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
