"""Full-reference quality metrics for the benchmark: PSNR (RGB and Y), SSIM, MS-SSIM and VMAF.

Lives in ``vtcodec.bench``; every function takes two uint8 videos shaped (T, H, W, 3) in RGB,
the reference first. The conventions, so that a codec engineer can check the numbers:

* ``psnr_rgb``: one MSE pooled over all frames, pixels and the three RGB channels of the
  video, then ``10*log10(255^2 / MSE)``. Identical videos give ``math.inf`` (not capped).
* ``psnr_y``: luma is BT.601 ``Y = 0.299 R + 0.587 G + 0.114 B`` computed in float on the
  full 0..255 scale (not rounded, not limited range). PSNR is computed per frame and the
  per-frame values are averaged (the x264/ffmpeg convention); a frame with zero error
  counts as ``PSNR_CAP_DB`` = 100 dB, so ``psnr_y`` is always finite.
* ``ssim``: Wang et al. 2004 on the same BT.601 luma, 11x11 Gaussian window with
  sigma = 1.5, K1 = 0.01, K2 = 0.03, L = 255, population (biased) local statistics, the mean of
  the SSIM map over the "valid" region (no padding; equal to scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255)``), per frame, then averaged over frames. Wang's MATLAB script's automatic
  downsampling of large images is NOT applied.
* ``ms_ssim``: Wang, Simoncelli & Bovik 2003 on the same luma with the SSIM window above,
  5 scales with the standard weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average
  pooling between scales. Frames whose shorter side would fall below 11 px at the coarsest
  scale use fewer scales (``ms_ssim_scales`` says how many) with the first weights
  renormalised to sum to 1, so 64x64 frames get 3 scales. Negative per-scale values are
  clamped to 0 before the fractional powers. Per frame, then averaged over frames.
* ``seam_score``: the mean absolute BT.601-luma step between neighbouring pixels across tile
  borders (columns/rows ``tile-1 | tile``, ``2*tile-1 | 2*tile``, ...) divided by the mean step
  at every other position, both directions pooled; 1.0 means the borders are no sharper than
  the picture anywhere else (no visible grid). One video in, no reference.
* ``chroma_psnr``: PSNR of BT.601 full-range Cb and of Cr (the JPEG/JFIF matrix, 0..255,
  peak 255), each from one MSE pooled over all frames and pixels, like ``psnr_rgb``.
* ``chroma_spread``: the standard deviation of Cb and of Cr over all pixels and frames, averaged;
  a decoder that washes colour out has a smaller spread than its input.
* ``thumbnail_floor``: RGB PSNR of the frames shrunk ``factor`` x per side (area average) and
  scaled back (bicubic), uncompressed: what a codec that keeps only the coarse picture scores.
* ``vmaf``: libvmaf model vmaf_v0.6.1 through the ffmpeg binary bundled by the optional
  ``imageio-ffmpeg`` package; both videos go to ffmpeg as lossless raw RGB and are converted
  to yuv420p (BT.601, limited range) by the same scaler. ``None`` when unavailable.

SSIM-family filtering runs in torch float64, frames in chunks to bound memory.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import warnings
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vtcodec.colour import BT601_YCC
from vtcodec.errors import VideoError, VtcodecError

PSNR_CAP_DB = 100.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
VMAF_MODEL = "vmaf_v0.6.1"
VMAF_UNAVAILABLE = "VMAF: unavailable (pip install vtcodec[vmaf])"

# BT.601 full-range (JFIF) rows; the colour differences are offset 128 on the 0..255 scale.
_BT601, _CB601, _CR601 = BT601_YCC
# Frames per filtering chunk are chosen so one float64 map stays near 16 MB (~200 MB peak).
_CHUNK_PIXELS = 2_000_000


def _check_pair(ref: np.ndarray, dist: np.ndarray) -> None:
    """Refuse inputs whose comparison would be meaningless rather than broadcast them."""
    for name, a in (("reference", ref), ("distorted", dist)):
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
            raise VtcodecError(
                f"{name} frames must be uint8 (T,H,W,3), got {a.dtype} {tuple(a.shape)}"
            )
    if ref.shape != dist.shape:
        raise VtcodecError(f"frame shapes differ: reference {ref.shape} vs distorted {dist.shape}")
    if ref.shape[0] == 0:
        raise VtcodecError("cannot measure quality of an empty video (0 frames)")


def _psnr_from_mse(mse: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def luma(frames: np.ndarray) -> np.ndarray:
    """BT.601 luma of uint8 RGB frames as float64 (T, H, W) on the full 0..255 scale."""
    f = frames.astype(np.float64)
    return f[..., 0] * _BT601[0] + f[..., 1] * _BT601[1] + f[..., 2] * _BT601[2]


def psnr_rgb(ref: np.ndarray, dist: np.ndarray) -> float:
    """PSNR in dB from one MSE pooled over every frame, pixel and RGB channel; inf if identical."""
    _check_pair(ref, dist)
    # Sum of squares in int64 is exact, so "identical" is decided without float rounding.
    d = ref.astype(np.int32) - dist.astype(np.int32)
    sse = int(np.square(d).sum(dtype=np.int64))
    return _psnr_from_mse(sse / d.size)


def psnr_y_frames(ref: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Per-frame BT.601-luma PSNR in dB, zero-error frames capped at PSNR_CAP_DB."""
    _check_pair(ref, dist)
    mse = ((luma(ref) - luma(dist)) ** 2).mean(axis=(1, 2))
    with np.errstate(divide="ignore"):
        p = 10.0 * np.log10(255.0**2 / mse)
    return np.minimum(p, PSNR_CAP_DB)


def psnr_y(ref: np.ndarray, dist: np.ndarray) -> float:
    """Mean over frames of per-frame BT.601-luma PSNR (dB), each frame capped at 100 dB."""
    return float(psnr_y_frames(ref, dist).mean())


@lru_cache(maxsize=4)
def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """1D Gaussian window (float64, sums to 1): SSIM's, shared with the training loss."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur_valid(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of (N, 1, H, W) keeping only the fully covered ('valid') part.

    Written as 11 shifted multiply-adds per axis: CPU conv2d with one float64 channel is
    ~20x slower than this.
    """
    g = gaussian_window(SSIM_WINDOW, SSIM_SIGMA).tolist()
    k = len(g)
    w = x.shape[-1] - k + 1
    acc = x[..., 0:w] * g[0]
    for i in range(1, k):
        acc.add_(x[..., i : i + w], alpha=g[i])
    h = acc.shape[-2] - k + 1
    out = acc[..., 0:h, :] * g[0]
    for i in range(1, k):
        out.add_(acc[..., i : i + h, :], alpha=g[i])
    return out


def _ssim_terms(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image means of the full SSIM map and of its contrast-structure part, shape (N,)."""
    n = x.shape[0]
    c1 = (SSIM_K1 * 255.0) ** 2
    c2 = (SSIM_K2 * 255.0) ** 2
    # One batched filter call for the five local moments.
    m = _blur_valid(torch.cat([x, y, x * x, y * y, x * y], dim=0))
    mx, my, mxx, myy, mxy = m[:n], m[n : 2 * n], m[2 * n : 3 * n], m[3 * n : 4 * n], m[4 * n :]
    vx = mxx - mx * mx
    vy = myy - my * my
    cov = mxy - mx * my
    cs = (2 * cov + c2) / (vx + vy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def _chunks(t: int, h: int, w: int):
    step = max(1, _CHUNK_PIXELS // max(1, h * w))
    for s in range(0, t, step):
        yield slice(s, min(t, s + step))


def _luma_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(luma(frames)).unsqueeze(1)


def _require_window(h: int, w: int) -> None:
    if min(h, w) < SSIM_WINDOW:
        raise VideoError(
            f"frames of {w}x{h} are smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window"
        )


def ssim_frames(ref: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Per-frame SSIM on BT.601 luma (see module docstring for the exact definition)."""
    _check_pair(ref, dist)
    t, h, w, _ = ref.shape
    _require_window(h, w)
    out = []
    for sl in _chunks(t, h, w):
        s, _ = _ssim_terms(_luma_tensor(ref[sl]), _luma_tensor(dist[sl]))
        out.append(s.numpy())
    return np.concatenate(out)


def ssim(ref: np.ndarray, dist: np.ndarray) -> float:
    """Mean over frames of the Gaussian-window SSIM of BT.601 luma; 1.0 for identical videos."""
    return float(ssim_frames(ref, dist).mean())


def ms_ssim_scales(height: int, width: int) -> int:
    """Number of MS-SSIM scales used for this frame size: at most 5, fewer for small frames."""
    _require_window(height, width)
    side = min(height, width)
    n = 1
    while n < len(MS_SSIM_WEIGHTS) and side // 2**n >= SSIM_WINDOW:
        n += 1
    return n


def ms_ssim_frames(ref: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Per-frame MS-SSIM on BT.601 luma (see module docstring for the exact definition)."""
    _check_pair(ref, dist)
    t, h, w, _ = ref.shape
    scales = ms_ssim_scales(h, w)
    wts = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=torch.float64)
    wts = wts / wts.sum()
    out = []
    for sl in _chunks(t, h, w):
        x, y = _luma_tensor(ref[sl]), _luma_tensor(dist[sl])
        vals = []
        for j in range(scales):
            s, cs = _ssim_terms(x, y)
            # Coarsest scale contributes luminance too (full SSIM); finer ones only contrast-structure.
            vals.append(s if j == scales - 1 else cs)
            if j < scales - 1:
                x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        v = torch.stack(vals, dim=1).clamp_min(0.0)
        out.append(torch.prod(v ** wts, dim=1).numpy())
    return np.concatenate(out)


def ms_ssim(ref: np.ndarray, dist: np.ndarray) -> float:
    """Mean over frames of MS-SSIM on BT.601 luma; 5 scales, fewer for small frames."""
    return float(ms_ssim_frames(ref, dist).mean())


@lru_cache(maxsize=1)
def vmaf_unavailable_reason() -> str | None:
    """None when VMAF can be computed, else a one-line reason."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return VMAF_UNAVAILABLE
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
        r = subprocess.run(
            [exe, "-hide_banner", "-filters"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        return f"VMAF: unavailable (ffmpeg from imageio-ffmpeg cannot run: {e})"
    if " libvmaf " not in r.stdout:
        return f"VMAF: unavailable ({exe} has no libvmaf filter)"
    return None


def vmaf_available() -> bool:
    return vmaf_unavailable_reason() is None


def vmaf(ref_frames: np.ndarray, dist_frames: np.ndarray, fps: float | Fraction) -> float | None:
    """Mean VMAF (model vmaf_v0.6.1) over frames, or None when VMAF is unavailable or fails.

    Both videos are written losslessly as raw rgb24 to a temporary directory; ffmpeg converts
    each to yuv420p with the same BT.601 limited-range scaler (VMAF reads luma only).
    """
    _check_pair(ref_frames, dist_frames)
    if vmaf_unavailable_reason() is not None:
        return None
    import imageio_ffmpeg

    _, h, w, _ = ref_frames.shape
    rate = str(Fraction(fps).limit_denominator(1_000_000))
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", rate]
    threads = max(1, min(8, os.cpu_count() or 1))
    graph = (
        "[0:v]scale=out_color_matrix=bt601:out_range=tv,format=yuv420p[d];"
        "[1:v]scale=out_color_matrix=bt601:out_range=tv,format=yuv420p[r];"
        f"[d][r]libvmaf=log_fmt=json:log_path=vmaf.json:n_threads={threads}"
    )
    with tempfile.TemporaryDirectory(prefix="vtcodec-vmaf-") as tmp:
        Path(tmp, "dist.rgb").write_bytes(np.ascontiguousarray(dist_frames).tobytes())
        Path(tmp, "ref.rgb").write_bytes(np.ascontiguousarray(ref_frames).tobytes())
        # Run inside the temp dir so log_path needs no filtergraph escaping of the path.
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
        cmd += raw + ["-i", "dist.rgb"] + raw + ["-i", "ref.rgb"]
        cmd += ["-lavfi", graph, "-f", "null", "-"]
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        log = Path(tmp, "vmaf.json")
        if r.returncode != 0 or not log.exists():
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            warnings.warn(f"VMAF failed (ffmpeg exit {r.returncode}): {last}", stacklevel=2)
            return None
        data = json.loads(log.read_text())
    pooled = data.get("pooled_metrics", {}).get("vmaf", {})
    if "mean" in pooled:
        return float(pooled["mean"])
    per_frame = [f["metrics"]["vmaf"] for f in data.get("frames", [])]
    return float(np.mean(per_frame)) if per_frame else None


def _check_video(frames: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise VtcodecError(f"frames must be non-empty uint8 (T,H,W,3), got {frames.dtype} {tuple(frames.shape)}")


def _colour_difference(frames: np.ndarray, rows: tuple[float, float, float]) -> np.ndarray:
    f = frames.astype(np.float64)
    return 128.0 + f[..., 0] * rows[0] + f[..., 1] * rows[1] + f[..., 2] * rows[2]


def seam_score(frames: np.ndarray, tile: int = 128) -> float:
    """Mean |luma step| across tile borders / mean |luma step| elsewhere; 1.0 = no grid.

    nan when the frames are no larger than one tile (no border to measure); inf when only the
    borders have steps.
    """
    _check_video(frames)
    if tile < 1:
        raise VtcodecError(f"tile must be a positive number of pixels, got {tile}")
    y = luma(frames)
    border_sum = other_sum = 0.0
    border_n = other_n = 0
    for axis in (2, 1):  # steps between columns, then between rows
        d = np.abs(np.diff(y, axis=axis))  # position i is the step between pixel i and i + 1
        at = np.zeros(d.shape[axis], bool)
        at[tile - 1 :: tile] = True
        b = d.compress(at, axis=axis)
        border_sum += float(b.sum())
        border_n += b.size
        other_sum += float(d.sum()) - float(b.sum())
        other_n += d.size - b.size
    if border_n == 0 or other_n == 0:
        return math.nan
    border, other = border_sum / border_n, other_sum / other_n
    if other == 0:
        return 1.0 if border == 0 else math.inf
    return border / other


def chroma_psnr(ref: np.ndarray, dist: np.ndarray) -> tuple[float, float]:
    """(Cb PSNR, Cr PSNR) in dB, BT.601 full range, each from one pooled MSE; inf if identical."""
    _check_pair(ref, dist)
    out = []
    for rows in (_CB601, _CR601):
        mse = float(np.mean((_colour_difference(ref, rows) - _colour_difference(dist, rows)) ** 2))
        out.append(_psnr_from_mse(mse))
    return out[0], out[1]


def chroma_spread(frames: np.ndarray) -> float:
    """Mean of the standard deviations of Cb and Cr (BT.601 full range) over the whole video."""
    _check_video(frames)
    return float(np.mean([_colour_difference(frames, rows).std() for rows in (_CB601, _CR601)]))


def resize_frames(frames: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """uint8 (T, H, W, 3) resampled to (T, height, width, 3) by torch ("area" to shrink,
    "bicubic" to enlarge), rounded and clipped; frames in chunks to bound memory."""
    _check_video(frames)
    t, h, w, _ = frames.shape
    out = np.empty((t, height, width, 3), np.uint8)
    for sl in _chunks(t, max(h, height), max(w, width)):
        x = torch.from_numpy(frames[sl]).permute(0, 3, 1, 2).float()  # (N, 3, H, W)
        kw = {} if mode == "area" else {"align_corners": False}
        y = F.interpolate(x, size=(height, width), mode=mode, **kw)
        out[sl] = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def thumbnail_floor(frames: np.ndarray, factor: int = 16) -> float:
    """RGB PSNR of the frames shrunk `factor` x per side (area) and scaled back (bicubic)."""
    _check_video(frames)
    if factor < 1:
        raise VtcodecError(f"factor must be a positive whole number, got {factor}")
    _, h, w, _ = frames.shape
    small = resize_frames(frames, max(1, round(h / factor)), max(1, round(w / factor)), "area")
    return psnr_rgb(frames, resize_frames(small, h, w, "bicubic"))


def all_metrics(
    ref: np.ndarray, dist: np.ndarray, fps: float | Fraction | None = None, with_vmaf: bool = True
) -> dict:
    """Every metric of this module in one dict; 'vmaf' is None when skipped or unavailable."""
    _, h, w, _ = ref.shape
    return {
        "psnr_rgb": psnr_rgb(ref, dist),
        "psnr_y": psnr_y(ref, dist),
        "ssim": ssim(ref, dist),
        "ms_ssim": ms_ssim(ref, dist),
        "ms_ssim_scales": ms_ssim_scales(h, w),
        "vmaf": vmaf(ref, dist, fps) if (with_vmaf and fps is not None) else None,
    }
