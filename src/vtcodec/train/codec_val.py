"""Validation through the real codec, during training (`vtcodec train --val-codec DIR`).

The run's own validation (`loop.validate`) scores the training step on 128-px clips of the
validation sources, synthetic hard cases included. It did not rank codec checkpoints: in rounds 9
and 10 it rose 0.5-0.9 dB while the codec's figures moved by a few per cent of the bits
(models/README.md). With `--val-codec DIR`, every validation also codes each video of DIR the way
`benchmarks/rd_sweep.py` and `vtcodec bench --frames 32 --size 256x256` do: its first 32 frames,
centre-cropped and resized to 256x256, through `vtcodec.encode_file` with the EMA weights and back
through `decode_frames`, default codec settings. It logs the means over clips of the bits per
pixel from the real .vtk sizes, PSNR and SSIM (`val_codec_bpp`, `val_codec_psnr`,
`val_codec_ssim`). The files name the checkpoint `val`; a shipped key of another length moves
the bits of 3-KB files by a few tenths of a per cent. Only rank 0 codes (under torchrun the
others wait at the next step), so keep the folder to a few short clips.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from vtcodec.errors import VtcodecError
from vtcodec.video import VIDEO_EXT


def codec_val_videos(folder: str | Path) -> list[Path]:
    """The videos `--val-codec` codes: the folder's files with a video suffix, sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXT) if folder.is_dir() else []


class CodecValidation:
    """The clips of a folder, prepared once in a temporary folder; call it with a model."""

    def __init__(self, folder: str | Path, frames: int = 32, size: int = 256):
        from vtcodec.bench.prepare import fit_size, load_clip, write_lossless

        clips = codec_val_videos(folder)
        if not clips:
            raise VtcodecError(f"--val-codec {folder}: no videos there ({', '.join(sorted(VIDEO_EXT))})")
        self._tmp = tempfile.TemporaryDirectory(prefix="vtcodec-val-")
        self.dir = Path(self._tmp.name)
        self.sources = []
        for i, c in enumerate(clips):  # by index: a.mp4 and a.mkv are two clips
            clip, info = load_clip(c, frames)
            ref, _ = write_lossless(fit_size(clip, size, size), self.dir / f"{i}.mkv", info.fps)
            self.sources.append((self.dir / f"{i}.mkv", ref))

    def __call__(self, model) -> dict[str, float]:
        from vtcodec.bench.metrics import psnr_rgb, ssim
        from vtcodec.codec import decode_frames, encode_file

        model.key, model.sha256 = "val", "0" * 64  # what the .vtk header names
        out = self.dir / "val.vtk"
        rows = []
        for src, ref in self.sources:
            r = encode_file(src, out, model=model, force=True)
            dec = decode_frames(out, model=model)
            rows.append((r.bpp, psnr_rgb(ref, dec), ssim(ref, dec)))
        bpp, p, s = np.mean(rows, axis=0)
        return {"codec_bpp": float(bpp), "codec_psnr": float(p), "codec_ssim": float(s)}

    def close(self) -> None:
        self._tmp.cleanup()
