"""Run the benchmark: tokenizer models against x264/x265/AV1 on the same prepared clips.

Lives in ``vtcodec.bench``; ``vtcodec bench`` (``vtcodec.cli_bench``) is its front end and
``run_bench`` returns a plain dict of every raw number (see ``jsonio`` for how it is saved).

Per input video: the first ``frames`` frames are center-cropped/resized to ``size`` and
written as a lossless source (x264rgb qp 0); the frames read back from it are the reference
for every codec. Each model then encodes that file to a real ``.vtk`` and decodes it, timed
after a warm-up (see ``worker``), by default in a child process per model so its peak memory
is its own. Each classical codec gets an RD curve over fixed CRFs and, per model, a CRF
search matching the model's bpp (``classical.match_bpp``), plus BD-rate against x264.

Units: ``bpp = 8 * bytes / (frames * width * height)`` with bytes the real ``.vtk`` file size
(models) or elementary-stream size (classical); ``compression_ratio = 24 * pixels / bits``
(against raw 8-bit RGB); ``pixels_per_token = frames * width * height / tokens``. Across
videos, bpp and compression ratio are pooled (total bits over total pixels), quality metrics
are the mean of per-video values with infinite PSNR counted as ``metrics.PSNR_CAP_DB`` (the
mean stays inf only when every video is lossless), fps is
total frames over total seconds, peak memory is the maximum.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vtcodec.bench import classical, metrics
from vtcodec.bench.machine import machine_info
from vtcodec.bench.prepare import fit_size, load_clip, write_lossless
from vtcodec.bench.worker import measure
from vtcodec.checkpoint_index import ARCH_PAIRED_AS
from vtcodec.errors import ModelError, VideoError, VtcodecError
from vtcodec.video import VIDEO_EXT

SCHEMA = "vtcodec-bench/1"
ANCHOR = "x264"
METRIC_KEYS = ("psnr_rgb", "psnr_y", "ssim", "ms_ssim", "vmaf")




@dataclass(frozen=True)
class ModelSpec:
    """One tokenizer to benchmark.

    ``model`` is what ``vtcodec.encode_file(model=...)`` receives: an installed model key or a
    checkpoint path. ``key`` labels it in results; ``arch`` (tivtok/tivtok2/reftok/vidtok; its ``family`` maps tivtok2 to tivtok) lets the
    paper suite pair models, and is guessed from the key when unknown.
    """

    key: str
    model: str
    pixels_per_token: int | None = None
    arch: str | None = None
    params: int | None = None
    sha256: str | None = None
    encode: dict = field(default_factory=dict)  # more encode_file keyword arguments (run_bench's refine)
    paired_as: str | None = None  # the paper model it stands for (checkpoint_index.paired_as)

    @property
    def family(self) -> str | None:
        if self.paired_as:
            return self.paired_as
        if self.arch:
            return ARCH_PAIRED_AS.get(self.arch, self.arch)
        name = Path(self.key).name.lower()
        for arch in ("tivtok", "reftok", "vidtok"):
            if name.startswith(arch):
                return arch
        return None


def available_models(codec) -> list[ModelSpec]:
    """Every installed model, as reported by ``codec.list_models()``."""
    out = []
    for m in codec.list_models():
        out.append(
            ModelSpec(
                key=m.key,
                model=m.key,
                pixels_per_token=getattr(m, "pixels_per_token", None),
                arch=getattr(m, "arch", None),
                params=getattr(m, "params", None),
                sha256=getattr(m, "sha256", None),
                paired_as=getattr(m, "paired_as", None),
            )
        )
    return out


def select_models(available: Sequence[ModelSpec], ratio: int | None,
                  keys: Sequence[str] | None = None) -> list[ModelSpec]:
    """Models with ``ratio`` pixels per token (all models when ratio is None), and among them
    only those named in ``keys`` when given."""
    if not available:
        raise ModelError(
            "no tokenizer models are installed (see `vtcodec models`); nothing to benchmark"
        )
    if keys:
        unknown = sorted(set(keys) - {m.key for m in available})
        if unknown:
            raise ModelError(f"no installed model {unknown[0]!r}; installed: {', '.join(m.key for m in available)}")
        available = [m for m in available if m.key in set(keys)]
    if ratio is None:
        return list(available)
    chosen = [m for m in available if m.pixels_per_token == ratio]
    if not chosen:
        have = sorted({m.pixels_per_token for m in available if m.pixels_per_token})
        raise ModelError(
            f"no installed model has {ratio} pixels per token; available ratios: "
            f"{', '.join(map(str, have)) or 'none'}"
        )
    return chosen


def resolve_device(device: str) -> str:
    """The codec's device rule ("auto" -> cuda when present), as a string for the JSON."""
    from vtcodec.codec import resolve_device as codec_device  # torch imports lazily

    return str(codec_device(device))


def expand_data(data: Sequence[str | os.PathLike]) -> list[Path]:
    """Input videos: files as given; a folder contributes its video files, sorted by name.

    A folder holding no video files is taken as one PNG-frame sequence.
    """
    out: list[Path] = []
    for item in data:
        p = Path(item)
        if p.is_dir():
            vids = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXT)
            if not vids and not any(f.suffix.lower() == ".png" for f in p.iterdir()):
                raise VideoError(f"folder {str(p)!r} holds no videos ({', '.join(sorted(VIDEO_EXT))}) "
                                 "and no .png frames")
            out.extend(vids if vids else [p])
        elif p.exists():
            out.append(p)
        else:
            raise VideoError(f"no such file or folder: {str(p)!r}")
    if not out:
        raise VideoError("no input videos given")
    return out


def _mean_capped(values):
    """Mean with +inf counted as PSNR_CAP_DB (inf if all are inf); None if any is missing."""
    if not values or any(v is None for v in values):
        return None
    if all(math.isinf(v) for v in values):
        return math.inf
    return float(np.mean([metrics.PSNR_CAP_DB if math.isinf(v) else v for v in values]))


class _ChildCodec:
    """Runs ``worker.measure`` in a fresh Python process importing ``module``."""

    def __init__(self, module: str):
        self.module = module

    def run(self, src: Path, spec: ModelSpec, device: str, work: Path, warmup: bool) -> dict:
        job = {
            "codec": self.module,
            "src": str(src),
            "model": spec.model,
            "device": device,
            "workdir": str(work),
            "warmup": warmup,
            "encode": spec.encode,
            "result": str(work / "result.json"),
            "decoded": str(work / "decoded.npy"),
        }
        job_path = work / "job.json"
        job_path.write_text(json.dumps(job))
        env = dict(os.environ)
        # The child must import exactly what this process imports (also modules on sys.path only).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        proc = subprocess.run(
            [sys.executable, "-m", "vtcodec.bench.worker", str(job_path)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        result_path = Path(job["result"])
        if not result_path.exists():
            last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise VtcodecError(f"benchmark of model {spec.key!r} crashed: {last}")
        res = json.loads(result_path.read_text())
        if not res["ok"]:
            if res["error_module"] == "vtcodec.errors":
                from vtcodec import errors

                raise getattr(errors, res["error_type"], VtcodecError)(res["message"])
            raise VtcodecError(
                f"benchmark of model {spec.key!r} failed: {res['error_type']}: {res['message']}"
            ) from ChildProcessError(res["traceback"])
        out = res["result"]
        out["decoded"] = np.load(job["decoded"])
        return out


def _bench_model(runner, codec_obj, spec, src, ref, fps, device, work, warmup, with_vmaf) -> dict:
    t, h, w, _ = ref.shape
    work.mkdir(parents=True, exist_ok=True)
    if runner is not None:
        raw = runner.run(src, spec, device, work, warmup)
    else:
        raw = measure(codec_obj, str(src), spec.model, device, str(work), warmup=warmup, encode=spec.encode)
    decoded = raw.pop("decoded")
    if decoded.shape != ref.shape or decoded.dtype != np.uint8:
        raise VtcodecError(
            f"model {spec.key!r} decoded {decoded.dtype} {decoded.shape}, "
            f"but the source is uint8 {ref.shape}"
        )
    pixels = t * h * w
    nbytes = raw["file_bytes"]
    out = {
        "key": spec.key,
        "model": spec.model,
        "arch": spec.arch or spec.family,
        "family": spec.family,
        "pixels_per_token_nominal": spec.pixels_per_token,
        **raw,
        "bpp": classical.bpp(nbytes, t, w, h),
        "compression_ratio": 24 * pixels / (8 * nbytes),
        "pixels_per_token": pixels / raw["tokens"] if raw["tokens"] else None,
        "tokens_per_frame": raw["tokens"] / t,
        "encode_fps": t / raw["encode_seconds"],
        "decode_fps": t / raw["decode_seconds"],
    }
    out.update(metrics.all_metrics(ref, decoded, fps, with_vmaf))
    return out


def _bench_video(
    path, index, n, specs, max_frames, size, device, codecs, crfs, with_vmaf, warmup,
    runner, codec_obj, root: Path, say,
) -> dict:
    name = path.name or str(path)
    tag = f"[{index + 1}/{n}] {name}"
    say(f"{tag}: loading")
    frames, info = load_clip(path, max_frames)
    if size is not None:
        frames = fit_size(frames, *size)
    fps = info.fps
    work = root / f"video{index}"
    work.mkdir(parents=True, exist_ok=True)
    src = work / "source.mkv"
    ref, lossless = write_lossless(frames, src, fps)
    t, h, w, _ = ref.shape
    video = {
        "path": str(path),
        "source": {
            "width": info.width,
            "height": info.height,
            "fps": fps,
            "frame_count": info.frame_count,
        },
        "frames": t,
        "width": w,
        "height": h,
        "fps": fps,
        "fps_float": float(fps),
        "pixels": t * h * w,
        "source_lossless": lossless,
        "models": {},
        "classical": {},
    }
    for spec in specs:
        say(f"{tag}: model {spec.key} (encode + decode{', warm-up first' if warmup else ''})")
        video["models"][spec.key] = _bench_model(
            runner, codec_obj, spec, src, ref, fps, device, work / f"model_{len(video['models'])}",
            warmup, with_vmaf,
        )
    cache = classical.encoder_cache()
    for codec in codecs:
        say(f"{tag}: {codec} RD curve")
        curve = classical.rd_curve(
            ref, fps, codec, crfs.get(codec) if crfs else None, with_vmaf=with_vmaf, cache=cache
        )
        entry = {"settings": classical.ENCODER_SETTINGS[codec], "rd_curve": [p.to_dict() for p in curve]}
        for key, m in video["models"].items():
            say(f"{tag}: {codec} matched to {key} ({m['bpp']:.4g} bpp)")
            match = classical.match_bpp(ref, fps, codec, m["bpp"], with_vmaf=with_vmaf, cache=cache)
            m.setdefault("matched", {})[codec] = match.to_dict()
            everything = curve + [p for p in (match.above, match.below) if p is not None]
            m.setdefault("bpp_at_equal_psnr_rgb", {})[codec] = classical.rate_at_quality(
                everything, m["psnr_rgb"], "psnr_rgb"
            )
        video["classical"][codec] = entry
    if ANCHOR in video["classical"]:
        anchor = video["classical"][ANCHOR]["rd_curve"]
        for codec, entry in video["classical"].items():
            if codec != ANCHOR:
                entry["bd_rate_vs_x264"] = {
                    mk: classical.bd_rate(anchor, entry["rd_curve"], mk).to_dict()
                    for mk in ("psnr_y", "psnr_rgb")
                }
    return video


def summarize(videos: list[dict]) -> dict:
    """Across-video aggregates, following the rules in the module docstring."""
    pixels = sum(v["pixels"] for v in videos)
    frames = sum(v["frames"] for v in videos)
    models: dict = {}
    matched: dict = {}
    for key in videos[0]["models"]:
        per = [v["models"][key] for v in videos]
        bits = sum(8 * m["file_bytes"] for m in per)
        s = {
            "bpp": bits / pixels,
            "compression_ratio": 24 * pixels / bits,
            "pixels_per_token": pixels / sum(m["tokens"] for m in per),
            "tokens_per_128_frames": sum(m["tokens"] for m in per) / frames * 128,
            "encode_fps": frames / sum(m["encode_seconds"] for m in per),
            "decode_fps": frames / sum(m["decode_seconds"] for m in per),
            "peak_rss_mb": max(m["peak_rss_mb"] for m in per),
            "peak_gpu_mb": max((m.get("peak_gpu_mb") or 0 for m in per), default=0) or None,
            "arch": per[0]["arch"],
            "family": per[0].get("family"),
            "pixels_per_token_nominal": per[0]["pixels_per_token_nominal"],
        }
        for k in METRIC_KEYS:
            s[k] = _mean_capped([m[k] for m in per])
        models[key] = s
        matched[key] = {}
        for codec in per[0].get("matched", {}):
            ms = [m["matched"][codec] for m in per]
            entry = {
                "target_bpp": s["bpp"],
                "bracketed": all(x["bracketed"] for x in ms),
                "exact": all(x["exact"] for x in ms),
                "notes": [x["note"] for x in ms if x["note"]],
                "encode_fps": frames / sum(x["nearest"]["encode_seconds"] for x in ms),
                "decode_fps": frames / sum(x["nearest"]["decode_seconds"] for x in ms),
                "nearest_bpp": sum(8 * x["nearest"]["bytes"] for x in ms) / pixels,
            }
            for k in METRIC_KEYS:
                entry[k] = _mean_capped([x["interpolated"][k] for x in ms])
                entry["nearest_" + k] = _mean_capped([x["nearest"][k] for x in ms])
            eq = [m["bpp_at_equal_psnr_rgb"][codec] for m in per]
            entry["bpp_at_equal_psnr_rgb"] = None if None in eq else float(np.mean(eq))
            matched[key][codec] = entry
    bd: dict = {}
    for codec, entry in videos[0]["classical"].items():
        if "bd_rate_vs_x264" in entry:
            bd[codec] = {}
            for mk in entry["bd_rate_vs_x264"]:
                vals = [v["classical"][codec]["bd_rate_vs_x264"][mk]["percent"] for v in videos]
                bd[codec][mk] = None if None in vals else float(np.mean(vals))
    return {
        "videos": len(videos),
        "frames": frames,
        "pixels": pixels,
        "models": models,
        "matched": matched,
        "bd_rate_vs_x264": bd,
    }


def run_bench(
    data: Sequence[str | os.PathLike],
    ratio: int | None = None,
    frames: int | None = None,
    size: tuple[int, int] | None = None,
    device: str = "auto",
    models: list[ModelSpec] | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    codecs: Sequence[str] = classical.CODECS,
    crfs: dict[str, list[int]] | None = None,
    with_vmaf: bool = True,
    warmup: bool = True,
    isolate: bool = True,
    codec="vtcodec",
    workdir: str | os.PathLike | None = None,
    suite: str = "default",
    refine: int = 0,
    refine_slope: float = 0.0,
    model_keys: Sequence[str] | None = None,
) -> dict:
    """Benchmark tokenizer models against classical codecs; returns every raw number.

    ``ratio``: pixels per token of the models to pick from ``codec.list_models()`` (None: all)
    unless ``models`` is given. ``size``: (width, height). ``codec``: the module name providing
    ``encode_file``/``decode_frames``/``list_models`` (default the real ``vtcodec``); an
    object instead of a name runs models in this process (``isolate`` is then ignored).
    ``progress`` receives one-line status messages. ``suite='paper'`` adds ``results['paper']``.
    ``model_keys``: only these installed models (with ``ratio``, those of them at that ratio).
    ``refine`` > 0: every model encodes with that many refinement steps (vtcodec.refine), trading
    ``refine_slope`` dB per doubling of bits.
    """
    say = progress or (lambda msg: None)
    if suite not in ("default", "paper"):
        raise VtcodecError(f"suite {suite!r} is not one of default, paper")
    if frames is not None and frames < 1:
        raise VtcodecError(f"--frames must be at least 1, got {frames}")
    for c in codecs:
        classical.crf_range(c)  # validates the name early
    device = resolve_device(device)
    if isinstance(codec, str):
        module_name, codec_obj = codec, importlib.import_module(codec)
    else:
        module_name, codec_obj = None, codec
    runner = _ChildCodec(module_name) if (isolate and module_name) else None
    specs = list(models) if models is not None else select_models(available_models(codec_obj), ratio, model_keys)
    from vtcodec.refine import check_settings  # imports torch, as the device rule below does

    lr = check_settings(refine, refine_slope)  # before the long run, not at its first encode
    if refine:
        specs = [replace(s, encode={**s.encode, "refine": refine, "refine_slope": refine_slope}) for s in specs]
    keys = [s.key for s in specs]
    if len(set(keys)) != len(keys):
        raise VtcodecError(f"model keys must be unique, got {keys}")
    paths = expand_data(data)
    vmaf_reason = metrics.vmaf_unavailable_reason() if with_vmaf else "VMAF: skipped"
    started = time.perf_counter()
    results: dict = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "suite": suite,
        "settings": {
            "ratio": ratio,
            "frames": frames,
            "size": list(size) if size else None,
            "device": device,
            "codecs": list(codecs),
            "crfs": {c: (crfs or {}).get(c) or classical.default_crfs(c) for c in codecs},
            "warmup": warmup,
            "refine": {"steps": refine, "slope": refine_slope, "lr": lr} if refine else None,
            "isolated_models": runner is not None,
            "vmaf": {"available": vmaf_reason is None, "model": metrics.VMAF_MODEL, "reason": vmaf_reason},
            "metric_definitions": metrics.__doc__,
            "classical_definitions": classical.__doc__,
        },
        "machine": machine_info(device),
        "models": [asdict(s) | {"family": s.family} for s in specs],
        "videos": [],
    }
    with tempfile.TemporaryDirectory(prefix="vtcodec-bench-", dir=workdir) as tmp:
        for i, path in enumerate(paths):
            results["videos"].append(
                _bench_video(
                    path, i, len(paths), specs, frames, size, device, codecs, crfs, with_vmaf,
                    warmup, runner, codec_obj, Path(tmp), say,
                )
            )
    results["summary"] = summarize(results["videos"])
    results["wall_seconds"] = time.perf_counter() - started
    if suite == "paper":
        from vtcodec.bench.paper import compare

        results["paper"] = compare(results["summary"])
    return results
