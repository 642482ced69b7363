"""Prepare one benchmark clip: load, center-crop/resize, and write it as a lossless source.

Lives in ``vtcodec.bench``. Every codec, neural or classical, is fed and judged against the
same prepared frames: the ones read back from the lossless file, which the tokenizer models
read too (the runner checks the read-back equals what was written).
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation

from vtcodec.errors import VtcodecError


def parse_size(text: str) -> tuple[int, int]:
    """'256x256' -> (256, 256) as (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise VtcodecError(f"size {text!r} is not WxH, e.g. 256x256") from None
    if w < 1 or h < 1:
        raise VtcodecError(f"size {text!r} must be positive")
    return w, h


def fit_size(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Center-crop to the target aspect ratio, then resize to width x height.

    Resizing uses swscale: area averaging when shrinking (no aliasing), bicubic when growing.
    """
    t, h, w, _ = frames.shape
    # Largest centred window with the target aspect ratio.
    if w * height > h * width:
        ch, cw = h, max(1, round(h * width / height))
    else:
        ch, cw = max(1, round(w * height / width)), w
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    frames = frames[:, y0 : y0 + ch, x0 : x0 + cw]
    if (cw, ch) == (width, height):
        return np.ascontiguousarray(frames)
    shrink = width <= cw and height <= ch
    interp = (Interpolation.AREA if shrink else Interpolation.BICUBIC) | Interpolation.ACCURATE_RND
    out = np.empty((t, height, width, 3), np.uint8)
    for i, rgb in enumerate(frames):
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        out[i] = f.reformat(width=width, height=height, interpolation=interp).to_ndarray()
    return out


def load_clip(path: str | os.PathLike, max_frames: int | None) -> tuple[np.ndarray, object]:
    """(frames, VideoInfo) for the first ``max_frames`` frames (all when None)."""
    from vtcodec import video

    info = video.probe(path)
    if max_frames is None or max_frames >= info.frame_count:
        return video.read_frames(path), info
    if max_frames < 1:
        raise VtcodecError(f"--frames must be at least 1, got {max_frames}")
    chunks = list(video.read_chunks(path, max_frames, 0, max_frames))
    return np.concatenate(chunks), info


def write_lossless(frames: np.ndarray, path: Path, fps) -> tuple[np.ndarray, bool]:
    """Write frames losslessly to ``path`` and read them back.

    Returns (read-back frames, whether they equal the input bit for bit). The read-back is what
    the tokenizer will see, so it is the reference for every metric.
    """
    from vtcodec import video

    _, h, w, _ = frames.shape
    with video.VideoWriter(path, w, h, fps, lossless=True, force=True) as wr:
        wr.write(frames)
    back = video.read_frames(path)
    return back, back.shape == frames.shape and bool(np.array_equal(back, frames))
