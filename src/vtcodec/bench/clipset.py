"""A folder of clips coded through the real codec: bits, PSNR and SSIM per clip.

What `benchmarks/rd_sweep.py` prints and `vtcodec train --val-codec DIR` logs. Each video of the
folder (sorted by name) is cut to its first `frames` frames, centre-cropped and resized to
size x size as `vtcodec bench --size` does, and written losslessly once into a temporary folder;
`scores(model, **settings)` then encodes each with `vtcodec.encode_file(..., **settings)` and
decodes it: bits per pixel from the real .vtk size, PSNR and SSIM of the decoded frames against
the lossless read-back.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vtcodec.errors import VtcodecError
from vtcodec.video import VIDEO_EXT


def folder_videos(folder: str | Path) -> list[Path]:
    """The folder's files with a video suffix, sorted ([] when it is not a folder)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXT) if folder.is_dir() else []


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

    def __init__(self, folder: str | Path, frames: int = 32, size: int = 256):
        from vtcodec.bench.prepare import fit_size, load_clip, write_lossless

        videos = folder_videos(folder)
        if not videos:
            raise VtcodecError(f"{folder}: no videos there ({', '.join(sorted(VIDEO_EXT))})")
        self._tmp = tempfile.TemporaryDirectory(prefix="vtcodec-clips-")
        self.dir = Path(self._tmp.name)
        self.clips = []  # (name, lossless source, its read-back frames)
        for i, v in enumerate(videos):  # files by index: a.mp4 and a.mkv are two clips
            frames_, info = load_clip(v, frames)
            src = self.dir / f"{i}.mkv"
            ref, _ = write_lossless(fit_size(frames_, size, size), src, info.fps)
            self.clips.append((v.stem, src, ref))

    def scores(self, model, **settings):
        """Yield each clip's ClipScore, coded with `model` (a loaded Tokenizer) and `settings`."""
        from vtcodec.bench.metrics import psnr_rgb, ssim
        from vtcodec.codec import decode_frames, encode_file

        if not hasattr(model, "key"):  # a model from training: what the .vtk header names
            model.key, model.sha256 = "val", "0" * 64
        out = self.dir / "o.vtk"
        for name, src, ref in self.clips:
            t0 = time.perf_counter()
            r = encode_file(src, out, model=model, force=True, **settings)
            secs = time.perf_counter() - t0
            dec = decode_frames(out, model=model)
            yield ClipScore(name, r.bpp, psnr_rgb(ref, dec), ssim(ref, dec), secs, ref[..., 0].size)

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> ClipSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
