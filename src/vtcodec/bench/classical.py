"""Classical-codec anchors for the benchmark: x264, x265 and SVT-AV1 through PyAV, in memory.

Lives in ``vtcodec.bench``. What is measured, so that a codec engineer can check it:

* Encoder settings: yuv420p 8-bit input (RGB -> BT.601 limited range by swscale, the inverse
  on the way back, both explicit); single-pass constant-quality CRF; x264 and x265 preset
  ``medium``, SVT-AV1 preset 8; default GOP/keyint of each encoder (so a short clip has one
  intra frame), encoder-chosen thread count. Odd widths/heights are edge-padded to even for
  4:2:0 and cropped after decoding; bpp still uses the original pixel count.
* Size: the sum of the encoder's output packets, i.e. the raw **elementary stream** with no
  container (H.264/HEVC Annex-B with in-band VPS/SPS/PPS; AV1 low-overhead OBU stream with
  its sequence header and temporal delimiters, as in a ``.obu`` file). The informational
  SEI that x264 always writes (its version and option string, ~600 bytes, not needed to
  decode) is stripped; x265 is told not to write its equivalent (``info=0``). The decoded
  frames are decoded from exactly the counted bytes, so nothing uncounted is used.
* Times: wall-clock seconds, encode = RGB->YUV conversion + encoding + flush, decode =
  decoding + YUV->RGB conversion, both single runs in this process (no warm-up; the encoder
  setup is included and is small next to the work).
* ``bpp = 8 * bytes / (frames * width * height)``.

``match_bpp`` bisects the integer CRF range until two adjacent CRFs bracket a target bpp
and interpolates each metric log-linearly in bpp; ``bd_rate`` is Bjøntegaard's delta rate
(VCEG-M33: cubic polynomial fit of log-rate against PSNR, integrated over the overlap).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import NamedTuple

import av
import numpy as np

from vtcodec.errors import VtcodecError

# SVT-AV1 prints a multi-line banner on every encoder open unless told to log errors only.
os.environ.setdefault("SVT_LOG", "1")

CODECS = ("x264", "x265", "av1")


@dataclass(frozen=True)
class _CodecSpec:
    encoder: str
    decoder: str
    crf_range: tuple[int, int]
    options: dict
    default_crfs: tuple[int, ...]


_SPECS = {
    "x264": _CodecSpec(
        "libx264", "h264", (0, 51), {"preset": "medium"}, (22, 27, 32, 37, 42, 47, 51)
    ),
    "x265": _CodecSpec(
        "libx265",
        "hevc",
        (0, 51),
        {"preset": "medium", "x265-params": "log-level=error:info=0"},
        (22, 27, 32, 37, 42, 47, 51),
    ),
    # SVT-AV1 takes CRF 1..63; libdav1d is the decoder (ffmpeg's native av1 needs hwaccel).
    "av1": _CodecSpec("libsvtav1", "libdav1d", (1, 63), {"preset": "8"}, (27, 35, 43, 51, 57, 63)),
}

ENCODER_SETTINGS = {
    "x264": "libx264 preset=medium crf=N yuv420p, x264 info SEI stripped",
    "x265": "libx265 preset=medium crf=N yuv420p info=0",
    "av1": "libsvtav1 preset=8 crf=N yuv420p, decoded with libdav1d",
}

# x264's user-data-unregistered SEI starts its payload with this text.
_X264_INFO = b"x264 - core"


class ClassicalResult(NamedTuple):
    """One encode/decode round trip; unpacks as (bytes, frames, enc_s, dec_s)."""

    bitstream_bytes: int
    decoded_frames: np.ndarray
    encode_seconds: float
    decode_seconds: float


def _spec(codec: str) -> _CodecSpec:
    if codec not in _SPECS:
        raise VtcodecError(f"unknown classical codec {codec!r}; choose from {', '.join(CODECS)}")
    return _SPECS[codec]


def crf_range(codec: str) -> tuple[int, int]:
    """Inclusive integer CRF range searched for this codec."""
    return _spec(codec).crf_range


def default_crfs(codec: str) -> list[int]:
    """CRFs used for RD curves by default, reaching the encoder's lowest rate."""
    return list(_spec(codec).default_crfs)


def bpp(nbytes: int, frames: int, width: int, height: int) -> float:
    """Bits per pixel: 8 * bytes / (frames * width * height)."""
    return 8.0 * nbytes / (frames * width * height)


def _split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B buffer, each with its own start code."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        # A 4-byte start code owns the zero before it.
        starts.append(i - 1 if i > 0 and data[i - 1] == 0 else i)
        i = data.find(b"\x00\x00\x01", i + 3)
    if not starts:
        return [data]
    starts.append(len(data))
    return [data[a:b] for a, b in itertools.pairwise(starts)]


def _strip_x264_info(packet: bytes) -> bytes:
    """Drop x264's version/options SEI NAL (type 6 carrying 'x264 - core'); keep all else."""
    keep = []
    for nal in _split_annexb(packet):
        sc = 4 if nal.startswith(b"\x00\x00\x00\x01") else 3
        if len(nal) > sc and nal[sc] & 0x1F == 6 and _X264_INFO in nal:
            continue
        keep.append(nal)
    return b"".join(keep)


def _check_frames(frames: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise VtcodecError(
            f"frames must be non-empty uint8 (T,H,W,3), got {frames.dtype} {frames.shape}"
        )


def encode_classical(
    frames: np.ndarray, fps: float | Fraction, codec: str, crf_or_qp: int
) -> ClassicalResult:
    """Encode RGB frames with one classical codec at one CRF and decode them back.

    Returns (elementary-stream bytes, decoded uint8 RGB frames, encode s, decode s); see the
    module docstring for exactly what is counted and timed.
    """
    _check_frames(frames)
    spec = _spec(codec)
    lo, hi = spec.crf_range
    crf = int(crf_or_qp)
    if not lo <= crf <= hi:
        raise VtcodecError(f"CRF {crf} is outside {codec}'s range {lo}..{hi}")
    t, h, w, _ = frames.shape
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1_000_000)

    t0 = time.perf_counter()
    enc = av.CodecContext.create(spec.encoder, "w")
    enc.width, enc.height, enc.pix_fmt = pw, ph, "yuv420p"
    enc.time_base = 1 / rate
    enc.framerate = rate
    enc.options = {**spec.options, "crf": str(crf)}
    packets: list[bytes] = []
    for i, rgb in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
            format="yuv420p",
            src_colorspace="itu601",
            dst_colorspace="itu601",
            src_color_range="JPEG",
            dst_color_range="MPEG",
        )
        vf.pts = i
        packets.extend(bytes(p) for p in enc.encode(vf))
    packets.extend(bytes(p) for p in enc.encode(None))
    encode_seconds = time.perf_counter() - t0
    if codec == "x264":
        packets = [_strip_x264_info(p) for p in packets]
    nbytes = sum(len(p) for p in packets)

    t0 = time.perf_counter()
    dec = av.CodecContext.create(spec.decoder, "r")
    out = []
    for p in [*packets, None]:
        for f in dec.decode(av.Packet(p) if p is not None else None):
            out.append(
                f.reformat(
                    format="rgb24",
                    src_colorspace="itu601",
                    dst_colorspace="itu601",
                    src_color_range="MPEG",
                    dst_color_range="JPEG",
                ).to_ndarray()
            )
    decode_seconds = time.perf_counter() - t0
    if len(out) != t:
        raise VtcodecError(f"{codec} CRF {crf}: encoded {t} frames but decoded {len(out)}")
    decoded = np.stack(out)[:, :h, :w]
    return ClassicalResult(nbytes, decoded, encode_seconds, decode_seconds)


@dataclass
class RDPoint:
    """One classical encode at one CRF with its size, quality and speed."""

    codec: str
    crf: int
    bytes: int
    bpp: float
    encode_seconds: float
    decode_seconds: float
    encode_fps: float
    decode_fps: float
    psnr_rgb: float | None = None
    psnr_y: float | None = None
    ssim: float | None = None
    ms_ssim: float | None = None
    ms_ssim_scales: int | None = None
    vmaf: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


QUALITY_KEYS = ("psnr_rgb", "psnr_y", "ssim", "ms_ssim", "vmaf")


class _Encoder:
    """Runs and memoises encodes of one clip so bisection and RD curves share work."""

    def __init__(self, frames: np.ndarray, fps, codec: str, with_vmaf: bool):
        self.frames, self.fps, self.codec, self.with_vmaf = frames, fps, codec, with_vmaf
        self.raw: dict[int, ClassicalResult] = {}
        self.points: dict[int, RDPoint] = {}

    def size(self, crf: int) -> float:
        if crf not in self.raw:
            self.raw[crf] = encode_classical(self.frames, self.fps, self.codec, crf)
        t, h, w, _ = self.frames.shape
        return bpp(self.raw[crf].bitstream_bytes, t, w, h)

    def point(self, crf: int) -> RDPoint:
        if crf not in self.points:
            b = self.size(crf)
            r = self.raw[crf]
            t = len(self.frames)
            from vtcodec.bench import metrics  # here, not at import: the settings above stay torch-free

            q = metrics.all_metrics(self.frames, r.decoded_frames, self.fps, self.with_vmaf)
            self.points[crf] = RDPoint(
                codec=self.codec,
                crf=crf,
                bytes=r.bitstream_bytes,
                bpp=b,
                encode_seconds=r.encode_seconds,
                decode_seconds=r.decode_seconds,
                encode_fps=t / r.encode_seconds,
                decode_fps=t / r.decode_seconds,
                **q,
            )
        return self.points[crf]


def encoder_cache() -> dict:
    """A cache to pass to ``match_bpp``/``rd_curve`` so several calls on one clip share encodes."""
    return {}


def _encoder(frames, fps, codec, with_vmaf, cache: dict | None) -> _Encoder:
    if cache is None:
        return _Encoder(frames, fps, codec, with_vmaf)
    key = (id(frames), codec, with_vmaf)
    # id() alone could be reused by a new array once the old one is freed; check identity.
    if key not in cache or cache[key].frames is not frames:
        cache[key] = _Encoder(frames, fps, codec, with_vmaf)
    return cache[key]


def rd_curve(
    frames: np.ndarray,
    fps: float | Fraction,
    codec: str,
    crfs: Sequence[int] | None = None,
    *,
    with_vmaf: bool = True,
    cache: dict | None = None,
) -> list[RDPoint]:
    """RD points of one codec at the given CRFs (default ``default_crfs(codec)``), by bpp."""
    _check_frames(frames)
    enc = _encoder(frames, fps, codec, with_vmaf, cache)
    pts = [enc.point(int(c)) for c in (crfs if crfs is not None else default_crfs(codec))]
    return sorted(pts, key=lambda p: p.bpp)


@dataclass
class BppMatch:
    """Result of ``match_bpp``: the bracketing encodes and metrics interpolated at the target.

    ``above``/``below`` are the points with bpp >= / <= target at adjacent CRFs. When the
    target is outside what the encoder reaches, ``bracketed`` is False, the missing side is
    None, ``interpolated`` holds None and ``note`` says why. ``exact`` is True when a point
    lies within 10 % of the target bpp; ``nearest`` is the closer of the two.
    """

    codec: str
    target_bpp: float
    bracketed: bool
    exact: bool
    above: RDPoint | None
    below: RDPoint | None
    nearest: RDPoint
    interpolated: dict = field(default_factory=dict)
    encodes: int = 0
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


EXACT_TOLERANCE = 0.10


def _interp_log(x: float, x0: float, x1: float, y0, y1):
    """Interpolate y at x linearly in log(x); None if either end is missing or not finite."""
    if y0 is None or y1 is None:
        return None
    if math.isinf(y0) or math.isinf(y1):
        return math.inf if (y0 == y1) else None
    if x0 == x1:
        return (y0 + y1) / 2
    a = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
    return y0 + a * (y1 - y0)


def match_bpp(
    frames: np.ndarray,
    fps: float | Fraction,
    codec: str,
    target_bpp: float,
    *,
    with_vmaf: bool = True,
    cache: dict | None = None,
) -> BppMatch:
    """Bisect the integer CRF range until adjacent CRFs bracket ``target_bpp``.

    Size is assumed to fall as CRF rises (true for these encoders up to rare +-1 CRF wobbles,
    which at worst leave a slightly wider bracket). Quality metrics are computed only for the
    two final points; every metric is interpolated log-linearly in bpp at the target.
    """
    _check_frames(frames)
    if not target_bpp > 0:
        raise VtcodecError(f"target bpp must be positive, got {target_bpp}")
    enc = _encoder(frames, fps, codec, with_vmaf, cache)
    before = len(enc.raw)
    lo, hi = crf_range(codec)  # lo: biggest files, hi: smallest
    a, b = lo, hi
    # Invariant: size(a) >= target (unless a == lo, untested) and size(b) <= target.
    while b - a > 1:
        m = (a + b) // 2
        if enc.size(m) >= target_bpp:
            a = m
        else:
            b = m
    sa, sb = enc.size(a), enc.size(b)
    note = None
    if sa < target_bpp:
        above, below = None, enc.point(a)
        note = f"{codec} at CRF {a} gives {sa:.4g} bpp, below the target {target_bpp:.4g} bpp"
    elif sb > target_bpp:
        above, below = enc.point(b), None
        note = (
            f"{codec} at its highest CRF {b} still needs {sb:.4g} bpp, "
            f"above the target {target_bpp:.4g} bpp"
        )
    else:
        above, below = enc.point(a), enc.point(b)
    pts = [p for p in (above, below) if p is not None]
    nearest = min(pts, key=lambda p: abs(math.log(p.bpp / target_bpp)))
    exact = abs(nearest.bpp / target_bpp - 1) <= EXACT_TOLERANCE
    interp = {}
    for k in QUALITY_KEYS:
        if above is not None and below is not None:
            interp[k] = _interp_log(
                target_bpp, below.bpp, above.bpp, getattr(below, k), getattr(above, k)
            )
        else:
            interp[k] = None
    return BppMatch(
        codec=codec,
        target_bpp=target_bpp,
        bracketed=above is not None and below is not None,
        exact=exact,
        above=above,
        below=below,
        nearest=nearest,
        interpolated=interp,
        encodes=len(enc.raw) - before,
        note=note,
    )


@dataclass
class BDRate:
    """Bjøntegaard delta rate of test vs anchor in percent (negative = test needs fewer bits)."""

    percent: float | None
    reason: str | None = None
    metric: str = "psnr_y"
    quality_range: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _rate_quality(points, metric: str) -> tuple[np.ndarray, np.ndarray]:
    rq = []
    for p in points:
        if isinstance(p, (tuple, list)):
            r, q = p
        else:
            r, q = (p["bpp"], p[metric]) if isinstance(p, dict) else (p.bpp, getattr(p, metric))
        if r is not None and q is not None and r > 0 and math.isfinite(q):
            rq.append((float(r), float(q)))
    rq.sort(key=lambda x: x[1])
    return np.array([x[0] for x in rq]), np.array([x[1] for x in rq])


def bd_rate(anchor_points, test_points, metric: str = "psnr_y") -> BDRate:
    """Bjøntegaard delta rate (VCEG-M33) of ``test_points`` against ``anchor_points``.

    Points are RDPoints, dicts with 'bpp' and ``metric``, or (rate, quality) pairs. Fits
    log10(rate) as a cubic polynomial of quality for each curve, integrates both over the
    overlapping quality interval and returns ``10**(mean difference) - 1`` in percent.
    Points with infinite or missing quality are ignored. Needs 4 points per curve; returns
    ``percent=None`` with a reason when there are too few or the ranges do not overlap.
    """
    ra, qa = _rate_quality(anchor_points, metric)
    rt, qt = _rate_quality(test_points, metric)
    for name, q in (("anchor", qa), ("test", qt)):
        if len(np.unique(q)) < 4:
            return BDRate(None, f"{name} curve has {len(np.unique(q))} distinct usable points; "
                          "a cubic fit needs 4", metric)
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    if not lo < hi:
        return BDRate(
            None,
            f"no overlapping {metric} range: anchor {qa.min():.2f}..{qa.max():.2f}, "
            f"test {qt.min():.2f}..{qt.max():.2f}",
            metric,
        )
    pa = np.polyint(np.polyfit(qa, np.log10(ra), 3))
    pt = np.polyint(np.polyfit(qt, np.log10(rt), 3))
    avg = ((np.polyval(pt, hi) - np.polyval(pt, lo)) - (np.polyval(pa, hi) - np.polyval(pa, lo))) / (
        hi - lo
    )
    return BDRate(float((10**avg - 1) * 100), None, metric, (float(lo), float(hi)))


def rate_at_quality(points, quality: float, metric: str = "psnr_rgb") -> float | None:
    """bpp a curve needs for ``quality``, log-linear between neighbours; None outside its range."""
    r, q = _rate_quality(points, metric)
    if not len(q) or quality is None or not math.isfinite(quality):
        return None
    if quality < q.min() or quality > q.max():
        return None
    # Rate is interpolated in log domain against quality, like the BD-rate model.
    order = np.argsort(q)
    return float(10 ** np.interp(quality, q[order], np.log10(r[order])))
