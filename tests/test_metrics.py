"""Tests for vtcodec.bench.metrics: PSNR conventions, SSIM against independent references,
MS-SSIM sanity, VMAF's graceful absence, and infinite PSNR surviving JSON.

Clips are at most 8 frames of 64x64 because the test machine is shared.
"""

import math
import sys

import numpy as np
import pytest

from vtcodec.bench import metrics
from vtcodec.bench.jsonio import read_results, write_results
from vtcodec.errors import VideoError, VtcodecError


def smooth(t=4, h=64, w=64, seed=0):
    """Textured but smooth RGB frames (low-passed noise), so SSIM is neither ~0 nor ~1."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (t, h // 4 + 2, w // 4 + 2, 3))
    big = small.repeat(4, 1).repeat(4, 2)
    # A 4-tap box blur along each axis turns the blocks into ramps.
    k = np.ones(4) / 4
    big = np.apply_along_axis(lambda v: np.convolve(v, k, "same"), 1, big)
    big = np.apply_along_axis(lambda v: np.convolve(v, k, "same"), 2, big)
    return np.clip(big[:, :h, :w], 0, 255).astype(np.uint8)


def add_noise(frames, sigma, seed=1):
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(frames + rng.normal(0, sigma, frames.shape)), 0, 255).astype(np.uint8)


# --- PSNR -----------------------------------------------------------------------------------


def test_identical_frames_give_infinite_rgb_psnr_and_capped_y_psnr():
    f = smooth()
    assert metrics.psnr_rgb(f, f) == math.inf
    assert metrics.psnr_y(f, f) == metrics.PSNR_CAP_DB
    # One differing frame: the others count at the cap in the per-frame average.
    g = f.copy()
    g[0, 0, 0, 0] ^= 1
    per = metrics.psnr_y_frames(f, g)
    assert per[1:].tolist() == [metrics.PSNR_CAP_DB] * (len(f) - 1)
    assert math.isfinite(metrics.psnr_rgb(f, g))


def test_gaussian_noise_gives_expected_psnr():
    # Mid-grey is 25 sigma from both clip limits, so only the rounding to integers (+1/12) matters.
    f = np.full((8, 64, 64, 3), 128, np.uint8)
    sigma = 5.0
    g = add_noise(f, sigma)
    expected = 10 * math.log10(255**2 / (sigma**2 + 1 / 12))
    assert metrics.psnr_rgb(f, g) == pytest.approx(expected, abs=0.05)
    # Independent noise per channel: luma noise variance scales by the sum of squared weights.
    w2 = 0.299**2 + 0.587**2 + 0.114**2
    expected_y = 10 * math.log10(255**2 / ((sigma**2 + 1 / 12) * w2))
    assert metrics.psnr_y(f, g) == pytest.approx(expected_y, abs=0.1)


def _clipped_rounded_mse(base, sigma):
    """E[(clip(round(base + N(0, sigma^2)), 0, 255) - base)^2], summed over output code values."""
    cdf = lambda x: 0.5 * (1 + math.erf((x - base) / (sigma * math.sqrt(2))))
    mse = 0.0
    for k in range(256):
        lo = -math.inf if k == 0 else k - 0.5
        hi = math.inf if k == 255 else k + 0.5
        p = (1.0 if hi == math.inf else cdf(hi)) - (0.0 if lo == -math.inf else cdf(lo))
        mse += p * (k - base) ** 2
    return mse


def test_gaussian_noise_near_white_accounts_for_clipping():
    base, sigma = 250, 10.0
    f = np.full((8, 64, 64, 3), base, np.uint8)
    g = add_noise(f, sigma)
    expected = 10 * math.log10(255**2 / _clipped_rounded_mse(base, sigma))
    naive = 20 * math.log10(255 / sigma)
    assert metrics.psnr_rgb(f, g) == pytest.approx(expected, abs=0.05)
    # Clipping removes error, so the naive 20log10(255/sigma) would be visibly wrong here.
    assert expected - naive > 0.5


def test_mismatched_or_bad_inputs_are_refused():
    f = smooth()
    with pytest.raises(VtcodecError):
        metrics.psnr_rgb(f, f[:, :32])
    with pytest.raises(VtcodecError):
        metrics.ssim(f, f.astype(np.float32))
    with pytest.raises(VideoError):
        metrics.ssim(f[:, :8, :8], f[:, :8, :8])


# --- SSIM -----------------------------------------------------------------------------------


def test_ssim_identical_is_one():
    f = smooth()
    assert metrics.ssim(f, f) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ms_ssim(f, f) == pytest.approx(1.0, abs=1e-12)


def _direct_ssim(x, y):
    """Wang et al. 2004 written out per window position: no separable filtering, no torch."""
    ax = np.arange(11) - 5
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    h, w = x.shape
    vals = []
    for i in range(h - 10):
        for j in range(w - 10):
            a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            ma, mb = (g * a).sum(), (g * b).sum()
            va, vb = (g * (a - ma) ** 2).sum(), (g * (b - mb) ** 2).sum()
            cov = (g * (a - ma) * (b - mb)).sum()
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_of_one_pixel_shift_matches_a_direct_computation():
    f = smooth(t=1, h=24, w=28)
    g = np.roll(f, 1, axis=2)
    ref = _direct_ssim(metrics.luma(f)[0], metrics.luma(g)[0])
    assert 0.3 < ref < 0.99  # a meaningful, non-degenerate case
    assert metrics.ssim(f, g) == pytest.approx(ref, abs=1e-9)


def test_ssim_of_one_pixel_shift_matches_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    f = smooth(t=3)
    g = np.roll(f, 1, axis=2)
    yf, yg = metrics.luma(f), metrics.luma(g)
    ref = np.mean([
        skm.structural_similarity(
            yf[i], yg[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
        for i in range(len(f))
    ])
    assert metrics.ssim(f, g) == pytest.approx(ref, abs=1e-9)


# --- MS-SSIM --------------------------------------------------------------------------------


def test_ms_ssim_scale_count_follows_frame_size():
    assert metrics.ms_ssim_scales(256, 256) == 5
    assert metrics.ms_ssim_scales(176, 300) == 5  # 176 / 16 = 11: exactly one window
    assert metrics.ms_ssim_scales(175, 300) == 4
    assert metrics.ms_ssim_scales(64, 64) == 3
    assert metrics.ms_ssim_scales(16, 16) == 1


def test_ms_ssim_with_one_scale_is_ssim():
    f = smooth(t=2, h=16, w=20)
    g = add_noise(f, 8)
    assert metrics.ms_ssim(f, g) == pytest.approx(metrics.ssim(f, g), abs=1e-12)


def test_ms_ssim_falls_with_noise_and_stays_in_range():
    f = smooth()
    scores = [metrics.ms_ssim(f, add_noise(f, s)) for s in (2, 8, 32)]
    assert all(0 < s < 1 for s in scores)
    assert scores[0] > scores[1] > scores[2]
    # MS-SSIM forgives fine-scale noise more than single-scale SSIM does.
    g = add_noise(f, 8)
    assert metrics.ms_ssim(f, g) > metrics.ssim(f, g)


# --- VMAF and downstream handling -----------------------------------------------------------


def test_vmaf_is_none_with_a_clear_reason_when_imageio_ffmpeg_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes the import fail
    metrics.vmaf_unavailable_reason.cache_clear()
    try:
        f = smooth(t=2)
        assert metrics.vmaf_unavailable_reason() == metrics.VMAF_UNAVAILABLE
        assert "pip install vtcodec[vmaf]" in metrics.VMAF_UNAVAILABLE
        assert metrics.vmaf(f, f, 25) is None
        assert metrics.all_metrics(f, f, 25)["vmaf"] is None
    finally:
        metrics.vmaf_unavailable_reason.cache_clear()


def test_vmaf_when_available():
    if not metrics.vmaf_available():
        pytest.skip(metrics.vmaf_unavailable_reason())
    f = smooth()
    same = metrics.vmaf(f, f, 25)
    worse = metrics.vmaf(f, add_noise(f, 20), 25)
    assert same > 90
    assert worse < same


def test_infinite_psnr_round_trips_through_json(tmp_path):
    f = smooth(t=2)
    res = {"psnr_rgb": metrics.psnr_rgb(f, f), "vmaf": None, "ssim": metrics.ssim(f, f)}
    path = tmp_path / "r.json"
    write_results(res, path)
    text = path.read_text()
    assert '"inf"' in text and "Infinity" not in text and '"vmaf": null' in text
    back = read_results(path)
    assert back["psnr_rgb"] == math.inf and back["vmaf"] is None and back["ssim"] == 1.0



# --- seam score, chroma, thumbnail floor (issue 25's validation report) ----------------------


def test_seam_score_of_a_smooth_picture_is_about_one():
    f = smooth(t=2, h=256, w=256)
    assert metrics.seam_score(f, tile=128) == pytest.approx(1.0, abs=0.15)


def _tile_casts(frames, block):
    """Every other `block`-pixel square brighter, the rest darker: per-tile casts."""
    yy, xx = np.mgrid[0 : frames.shape[1], 0 : frames.shape[2]]
    sign = np.where((yy // block + xx // block) % 2 == 0, 1, -1)[None, :, :, None]
    return np.clip(frames.astype(np.int16) + 15 * sign, 0, 255).astype(np.uint8)


def test_seam_score_finds_an_artificial_tile_step():
    f = smooth(t=2, h=256, w=256)
    assert metrics.seam_score(_tile_casts(f, 128), tile=128) > 1.5
    # The same casts off the grid are not seams at the tile size measured.
    assert metrics.seam_score(_tile_casts(f, 96), tile=128) < 1.2


def test_seam_score_of_exactly_known_steps():
    # A horizontal ramp of 1 per pixel with a jump of 5 at column 3|4: borders 5, elsewhere 1;
    # rows are constant, so vertical steps (all 0) count at non-border positions only.
    row = np.arange(8, dtype=np.int32)
    row[4:] += 4
    f = np.broadcast_to(row[None, None, :, None], (1, 8, 8, 3)).astype(np.uint8)
    # tile 4: the column border 3|4 has 8 steps of 5, the row border 3|4 has 8 steps of 0;
    # elsewhere 48 horizontal steps of 1 and 48 vertical steps of 0.
    border = (8 * 5 + 8 * 0) / 16
    other = (48 * 1 + 48 * 0) / 96
    assert metrics.seam_score(f, tile=4) == pytest.approx(border / other)
    assert math.isnan(metrics.seam_score(f, tile=8))  # one tile: no border


def test_chroma_psnr_and_spread():
    f = smooth(t=2)
    assert metrics.chroma_psnr(f, f) == (math.inf, math.inf)
    # Grey output from colour input: Cb/Cr error equals the input's chroma, spread falls to 0.
    grey = np.repeat(metrics.luma(f).round().clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    cb, cr = metrics.chroma_psnr(f, grey)
    assert 10 < cb < 40 and 10 < cr < 40
    assert metrics.chroma_spread(grey) < 0.6  # luma rounding leaves a trace of chroma
    assert metrics.chroma_spread(f) > 10
    # A pure luma change leaves chroma alone: white noise added equally to R, G, B.
    rng = np.random.default_rng(0)
    n = rng.integers(-3, 4, f.shape[:3])[..., None]
    g = np.clip(f.astype(int) + n, 0, 255).astype(np.uint8)
    cb2, cr2 = metrics.chroma_psnr(f, g)
    assert cb2 > metrics.psnr_rgb(f, g) + 10 and cr2 > metrics.psnr_rgb(f, g) + 10
    # Blue-only error moves Cb much more than Cr.
    b = f.copy()
    b[..., 2] = np.clip(b[..., 2].astype(int) + 20, 0, 255)
    cb3, cr3 = metrics.chroma_psnr(f, b)
    assert cb3 < cr3 - 10


def test_thumbnail_floor():
    flat = np.full((2, 64, 64, 3), 77, np.uint8)
    assert metrics.thumbnail_floor(flat) == math.inf  # nothing but the coarse picture
    f = smooth(t=2, h=128, w=128)
    coarse, fine = metrics.thumbnail_floor(f, 16), metrics.thumbnail_floor(f, 4)
    assert 10 < coarse < fine < 60
    noisy = add_noise(f, 40)
    assert metrics.thumbnail_floor(noisy, 16) < coarse
