"""The colour validation set (issue 25): small lossless clips that no checkpoint was trained on.

    python -m vtcodec.bench.valset MEDIA OUT_DIR [--frames 32] [--size 256]

MEDIA is the fetched training-media tree (../shared/data/SOURCES.md); only its validation split
(`vtcodec.train.data`: the photographs in VAL_PHOTOS and the last VAL_FRACTION of every video) is
read, so the set is disjoint from training by construction. OUT_DIR receives, each `frames` x
`size` x `size`, 25 fps, written losslessly (VideoWriter: libx264rgb qp 0, read back bit-exactly):

* `photo_<stem>.mkv`: every held-out photograph under the training pipeline's synthetic camera
  motion (`ClipSampler.photo_motion`: smooth sub-pixel pan, zoom, small rotation, maybe a moving
  sprite cut from the same photograph), seeded by the photograph's name;
* `video_<stem>_{whole,crop}.mkv`: the first frames of the held-out tail of each colour video
  (chroma spread >= COLOUR_SPREAD) long and large enough: the whole scene shrunk by a whole
  factor (area) and centre-cropped, and a native-resolution centre crop (sensor detail and noise);
  at most MAX_VIDEO_CLIPS in all;
* `hard_gradient.mkv`: a smooth two-colour diagonal gradient drifting sub-pixel (banding, chroma);
* `hard_text.mkv`: text-like glyph rows with one-pixel strokes scrolling one pixel per frame, a
  coloured heading line every few lines (fine detail and sharp chroma edges).

`manifest.json` beside them lists each clip's kind, source and seed. Same media in, same frames out.
The report that reads this set is benchmarks/validate.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np

from vtcodec.bench.metrics import chroma_spread, resize_frames
from vtcodec.errors import VtcodecError
from vtcodec.train.data import MIN_SIDE, VAL_PHOTOS, ClipSampler, Sources, load_sources
from vtcodec.video import IMAGE_EXT, VIDEO_EXT, VideoWriter, read_image

FPS = Fraction(25)
COLOUR_SPREAD = 3.0  # chroma spread (metrics.chroma_spread) above which a source counts as colour
MAX_VIDEO_CLIPS = 2
HARD_SEED = 25


def _to_frames(clip) -> np.ndarray:
    """float (3, T, S, S) in [-1, 1] (the training sampler's layout) -> uint8 (T, S, S, 3)."""
    return ((clip.permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def _name_seed(name: str) -> int:
    """A seed from a source's name: a clip does not change when other sources come or go."""
    return zlib.crc32(name.encode())


def photo_clip(image: np.ndarray, seed: int, frames: int, size: int) -> np.ndarray:
    """The training pipeline's camera motion over one photograph, uint8 (T, S, S, 3)."""
    return _to_frames(ClipSampler(Sources([], [image]), frames, size, seed=seed).photo_motion())


def val_tail(path: Path) -> np.ndarray | None:
    """The held-out tail of one video exactly as training cuts it (train.data.load_sources, run on
    a folder holding only this file), or None when training leaves the file out of both splits."""
    with tempfile.TemporaryDirectory(prefix="vtcodec-valset-") as tmp:
        os.symlink(path.resolve(), Path(tmp) / path.name)
        videos = load_sources(tmp, "val").videos
    return videos[0] if videos else None


def video_clips(tail: np.ndarray, frames: int, size: int) -> dict[str, np.ndarray]:
    """The whole scene shrunk to fit and a native centre crop of a tail's first `frames` frames."""
    if len(tail) < frames:
        return {}
    v = tail[:frames]
    h, w = v.shape[1:3]
    out = {}
    k = min(h, w) // size
    if k >= 1:
        small = v if k == 1 else resize_frames(v, h // k, w // k, "area")
        out["whole"] = _centre_crop(small, size)
        if k >= 2:
            out["crop"] = _centre_crop(v, size)
    return out


def _centre_crop(v: np.ndarray, size: int) -> np.ndarray:
    h, w = v.shape[1:3]
    y, x = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(v[:, y : y + size, x : x + size])


def gradient_clip(frames: int, size: int) -> np.ndarray:
    """A diagonal blend from sky blue to dusk orange drifting 0.37 px per frame: smooth, so banding
    and colour casts show."""
    a, b = np.array([46.0, 96.0, 178.0]), np.array([238.0, 150.0, 72.0])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        u = np.clip((xx + 0.6 * yy + 0.37 * t) / (1.6 * size + 0.37 * frames), 0, 1)[..., None]
        out[t] = np.round(a * (1 - u) + b * u).astype(np.uint8)
    return out


def text_clip(frames: int, size: int, seed: int = HARD_SEED) -> np.ndarray:
    """Rows of random 3x5 glyphs drawn 2x (one-pixel strokes), scrolling up one pixel a frame."""
    g = np.random.default_rng(seed)
    paper, ink, accent = np.array([246, 240, 226]), np.array([20, 24, 60]), np.array([200, 30, 40])
    line, char = 14, 8  # pixels per text line and per character cell
    rows = (size + frames) // line + 2
    page = np.broadcast_to(paper.astype(np.uint8), (rows * line, size, 3)).copy()
    glyphs = g.random((64, 5, 3)) < 0.45
    for r in range(rows):
        colour = accent if r % 5 == 0 else ink
        words = g.integers(0, 64, size // char)
        gaps = g.random(len(words)) < 0.18  # spaces between words
        for c, (gi, gap) in enumerate(zip(words, gaps)):
            if gap:
                continue
            # 3x5 glyph -> 6x10 cell of one-pixel strokes: each glyph pixel lights a pixel of its 2x2 block
            m = np.zeros((10, 6), bool)
            m[::2, ::2] = glyphs[gi]
            m[1::2, ::2] |= glyphs[gi]  # vertical strokes continuous
            y0, x0 = r * line + 2, c * char + 1
            page[y0 : y0 + 10, x0 : x0 + 6][m] = colour
    return np.ascontiguousarray(np.stack([page[t : t + size] for t in range(frames)]))


def build(media: str | Path, out_dir: str | Path, frames: int = 32, size: int = 256,
          log=print) -> list[dict]:
    """Write the validation set into `out_dir`; returns the manifest (one dict per clip)."""
    media, out = Path(media), Path(out_dir)
    if not media.is_dir():
        raise VtcodecError(f"media folder not found: {media}")
    files = sorted(p for p in media.rglob("*") if p.is_file())
    clips: list[tuple[dict, np.ndarray]] = []
    for p in files:
        if p.suffix.lower() in IMAGE_EXT and p.stem in VAL_PHOTOS:
            im = read_image(p)
            if min(im.shape[:2]) < MIN_SIDE:  # left out of both splits by training
                log(f"skip {p.name}: {im.shape[1]}x{im.shape[0]} is below {MIN_SIDE} pixels")
                continue
            seed = _name_seed(p.stem)
            clips.append(({"name": f"photo_{p.stem}", "kind": "photo", "source": p.name, "seed": seed},
                          photo_clip(im, seed, frames, size)))
    n_video = 0
    for p in files:
        if p.suffix.lower() not in VIDEO_EXT or n_video >= MAX_VIDEO_CLIPS:
            continue
        tail = val_tail(p)
        if tail is None or chroma_spread(tail[: min(len(tail), 8)]) < COLOUR_SPREAD:
            continue
        made = video_clips(tail, frames, size)
        if not made:
            log(f"skip {p.name}: its held-out tail ({len(tail)} frames of {tail.shape[2]}x{tail.shape[1]}) "
                f"is shorter than {frames} frames or smaller than {size}x{size}")
        for how, v in made.items():
            if n_video < MAX_VIDEO_CLIPS:
                clips.append(({"name": f"video_{p.stem}_{how}", "kind": "video", "source": p.name,
                               "seed": None}, v))
                n_video += 1
    for name, make in (("hard_gradient", gradient_clip), ("hard_text", text_clip)):
        clips.append(({"name": name, "kind": "hard", "source": "synthetic",
                       "seed": HARD_SEED if make is text_clip else None}, make(frames, size)))
    if not any(c["kind"] == "photo" for c, _ in clips):
        raise VtcodecError(f"no held-out photograph ({', '.join(sorted(VAL_PHOTOS))}) under {media}")
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for info, v in clips:
        target = out / f"{info['name']}.mkv"
        with VideoWriter(target, size, size, FPS, lossless=True, force=True) as w:
            w.write(v)
        info |= {"file": target.name, "frames": len(v), "width": size, "height": size,
                 "chroma_spread": round(chroma_spread(v), 3)}
        manifest.append(info)
        log(f"{target}: {info['kind']} from {info['source']}, chroma spread {info['chroma_spread']:.1f}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vtcodec.bench.valset", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("media", help="the training-media tree (only its validation split is read)")
    ap.add_argument("out", help="folder for the clips and manifest.json")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args(argv)
    try:
        build(a.media, a.out, a.frames, a.size)
    except VtcodecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
