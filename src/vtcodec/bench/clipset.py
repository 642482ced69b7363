"""A folder of clips (or one video) coded through the real codec: bits, PSNR and SSIM per clip.

What `benchmarks/rd_sweep.py` prints and `vtcodec train --val-codec DIR` logs, and what the other
benchmarks that code clips build on. Each video of the folder (sorted by name; or the one video
given) is cut to its first `frames` frames, centre-cropped and resized to size x size as `vtcodec
bench --size` does (size None: kept as it is), and written losslessly once into a temporary
folder; `coded(model, **settings)` then encodes each with `vtcodec.encode_file(..., **settings)`
and decodes it, and `scores` turns that into bits per pixel from the real .vtk size, PSNR and SSIM
of the decoded frames against the lossless read-back.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vtcodec.errors import VtcodecError
from vtcodec.video import VIDEO_EXT


def videos_at(path: str | Path) -> list[Path]:
    """A video file itself, or a folder's files with a video suffix, sorted ([] for anything else)."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_EXT)
    return [path] if path.is_file() and path.suffix.lower() in VIDEO_EXT else []


@dataclass(frozen=True)
class Coded:
    """One clip coded: its lossless read-back `ref`, the .vtk (valid until the next clip is coded),
    the encoder's result, the encode's wall time, and the decoded frames (None unless asked for)."""
    name: str
    ref: np.ndarray
    vtk: Path
    result: Any
    encode_s: float
    frames: np.ndarray | None


@dataclass(frozen=True)
class ClipScore:
    name: str
    bpp: float
    psnr: float
    ssim: float
    encode_s: float
    pixels: int  # frames x height x width: the weight of the clip's bits in pooled figures


def summary(scores: list[ClipScore]) -> dict[str, float]:
    """Means over clips, and the bits pooled over all pixels (what `vtcodec bench` reports)."""
    px = np.array([s.pixels for s in scores], float)
    return {"bpp": float(np.mean([s.bpp for s in scores])), "psnr": float(np.mean([s.psnr for s in scores])),
            "ssim": float(np.mean([s.ssim for s in scores])), "encode_s": float(np.mean([s.encode_s for s in scores])),
            "bpp_pooled": float(np.dot([s.bpp for s in scores], px) / px.sum())}


class ClipSet:
    """The clips of a folder, prepared once; score a model on them as often as needed."""

    def __init__(self, path: str | Path, frames: int = 32, size: int | None = 256):
        from vtcodec.bench.prepare import fit_size, load_clip, write_lossless

        videos = videos_at(path)
        if not videos:
            raise VtcodecError(f"{path}: no videos there ({', '.join(sorted(VIDEO_EXT))})")
        self._tmp = tempfile.TemporaryDirectory(prefix="vtcodec-clips-")
        self.dir = Path(self._tmp.name)
        self.clips = []  # (name, lossless source, its read-back frames)
        for i, v in enumerate(videos):  # files by index: a.mp4 and a.mkv are two clips
            frames_, info = load_clip(v, frames)
            src = self.dir / f"{i}.mkv"
            ref, _ = write_lossless(frames_ if size is None else fit_size(frames_, size, size), src, info.fps)
            self.clips.append((v.stem, src, ref))

    def coded(self, model, decode: bool = True, **settings) -> Iterator[Coded]:
        """Code each clip with `model` (a loaded Tokenizer, or a key or path) and `settings`, and
        decode it unless `decode` is False; one clip at a time, into the same .vtk."""
        from vtcodec.codec import decode_frames, encode_file, load_tokenizer

        if isinstance(model, (str, Path)):
            model = load_tokenizer(model)  # once, for every clip's encode and decode
        named = hasattr(model, "key")
        if not named:  # a model from training: what the .vtk header names, while it codes. A digest
            # like a real checkpoint's, not zeros: the header is compressed, and 64 zeros saved ~50
            # bytes a file, so `--val-codec` logged 2.5 % fewer bits than the exported checkpoint
            model.key, model.sha256 = "val", hashlib.sha256(b"vtcodec --val-codec").hexdigest()
        out = self.dir / "o.vtk"
        try:
            for name, src, ref in self.clips:
                t0 = time.perf_counter()
                r = encode_file(src, out, model=model, force=True, **settings)
                secs = time.perf_counter() - t0
                yield Coded(name, ref, out, r, secs, decode_frames(out, model=model) if decode else None)
        finally:  # the caller's model leaves as it came (a training run's is exported later)
            if not named:
                del model.key, model.sha256

    def scores(self, model, **settings) -> Iterator[ClipScore]:
        """Yield each clip's ClipScore, coded with `model` (a loaded Tokenizer) and `settings`."""
        from vtcodec.bench.metrics import psnr_rgb, ssim

        for c in self.coded(model, **settings):
            yield ClipScore(c.name, c.result.bpp, psnr_rgb(c.ref, c.frames), ssim(c.ref, c.frames), c.encode_s,
                            c.ref[..., 0].size)

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> ClipSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
