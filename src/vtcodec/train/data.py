"""Training clips: real footage, synthetic camera motion over photographs, synthetic hard cases.

Everything is decoded once into RAM as uint8 (about 2 GB for the whole training media) and clips
are cut on the fly, in-process by default: on two cores a worker process would only steal the
trainer's core. On a GPU machine one thread cannot keep up (37-46 clips/s of 32x128x128 on this project's CPU),
so `ClipStream` cuts whole batches in worker processes (`vtcodec train --workers N`), which share
the decoded sources with the trainer (fork, copy-on-write).
`python -m vtcodec.train.data DIR` measures sampling speed (clips/s on one thread).

Split (disjoint in content): the last 15 % of every video and a fixed set of photographs are
validation; everything else is training. Grey sources are replicated to RGB.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vtcodec.errors import VtcodecError
from vtcodec.video import IMAGE_EXT, VIDEO_EXT, read_frames, read_image

VAL_PHOTOS = {"flower", "fruits", "coffee", "P1070514", "P1070515", "leuvenB"}
VAL_FRACTION = 0.15
MIN_SIDE = 128  # sources smaller than this (pixels, either side) are left out of both splits
# shares of real video clips, camera motion over photographs and synthetic hard cases
DEFAULT_MIX = (0.45, 0.35, 0.20)


def parse_mix(text: str) -> tuple[float, ...]:
    """`--mix` as typed, e.g. "0.45,0.35,0.2"; not numbers is a one-line error (the shares
    themselves are checked by TrainOptions)."""
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise VtcodecError(f"--mix must be numbers separated by commas, e.g. 0.45,0.35,0.2; got {text!r}") from None


@dataclass
class Sources:
    videos: list[np.ndarray]  # each (T, H, W, 3) uint8
    photos: list[np.ndarray]  # each (H, W, 3) uint8


def load_sources(root: str | Path, split: str, min_side: int = MIN_SIDE) -> Sources:
    """Videos and photographs under `root` (any layout), cut to the `train` or `val` split."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    videos, photos = [], []
    for p in files:
        ext = p.suffix.lower()
        if ext in VIDEO_EXT:
            v = read_frames(p)
            if min(v.shape[1:3]) < min_side:
                continue
            cut = int(len(v) * (1 - VAL_FRACTION)) if len(v) > 8 else len(v)
            part = v[:cut] if split == "train" else v[cut:]
            if len(part) >= 4:
                videos.append(np.ascontiguousarray(part))
        elif ext in IMAGE_EXT:
            is_val = p.stem in VAL_PHOTOS
            if is_val == (split == "val"):
                im = read_image(p)
                if min(im.shape[:2]) >= min_side:
                    photos.append(im)
    return Sources(videos, photos)


def _to_video(x: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (3, T, H, W) in [-1, 1]."""
    return torch.from_numpy(x).permute(3, 0, 1, 2).float().div(127.5).sub(1)


class ClipSampler:
    """Random clips of `frames` x `size` x `size`, as float (3, T, S, S) in [-1, 1]."""

    def __init__(self, sources: Sources, frames: int, size: int, seed: int = 0,
                 mix: tuple[float, float, float] = DEFAULT_MIX):
        self.src, self.frames, self.size = sources, frames, size
        self.g = np.random.default_rng(seed)
        w = np.array([mix[0] if sources.videos else 0, mix[1] if sources.photos else 0, mix[2]], dtype=float)
        if not (np.isfinite(w.sum()) and w.sum() > 0):  # before a run writes anything
            raise VtcodecError(f"--mix {','.join(f'{x:g}' for x in mix)} leaves no kind of clip to draw from this data "
                               f"({len(sources.videos)} videos, {len(sources.photos)} photographs)")
        self.mix = w / w.sum()

    def __call__(self) -> torch.Tensor:
        kind = self.g.choice(3, p=self.mix)
        clip = [self.video_clip, self.photo_motion, self.hard_case][kind]()
        if self.g.random() < 0.08:  # scene cut inside the clip
            other = [self.video_clip, self.photo_motion, self.hard_case][self.g.choice(3, p=self.mix)]()
            t = self.g.integers(1, self.frames)
            clip = torch.cat([clip[:, :t], other[:, t:]], dim=1)
        if self.g.random() < 0.1:  # grey source, replicated to RGB
            clip = clip.mean(0, keepdim=True).expand(3, -1, -1, -1).contiguous()
        return clip

    def batch(self, n: int) -> torch.Tensor:
        return torch.stack([self() for _ in range(n)])

    # -- kinds ------------------------------------------------------------------------------
    def video_clip(self) -> torch.Tensor:
        g, T, S = self.g, self.frames, self.size
        v = self.src.videos[g.integers(len(self.src.videos))]
        stride = int(g.integers(1, 5))
        while stride > 1 and (T - 1) * stride >= len(v):
            stride -= 1
        idx = np.arange(T) * stride
        start = g.integers(0, max(1, len(v) - idx[-1]))
        idx = np.minimum(idx + start, len(v) - 1)
        h, w = v.shape[1:3]
        side = int(g.integers(S, min(h, w, 2 * S) + 1))  # crop then resize: scale variety
        y, x = g.integers(0, h - side + 1), g.integers(0, w - side + 1)
        clip = _to_video(v[idx, y:y + side, x:x + side])
        if side != S:
            clip = F.interpolate(clip, size=(S, S), mode="area")
        if g.random() < 0.5:
            clip = clip.flip(-1)
        if g.random() < 0.2:  # played backwards: motion in both directions
            clip = clip.flip(1)
        return clip

    def photo_motion(self) -> torch.Tensor:
        """Smooth pan + zoom + small rotation over a photograph, sub-pixel, plus maybe a sprite."""
        g, T, S = self.g, self.frames, self.size
        im = self.src.photos[g.integers(len(self.src.photos))]
        h, w = im.shape[:2]
        src = _to_video(im[None])[:, 0]  # (3, H, W)
        base = S / min(h, w) * g.uniform(1.0, 2.5)  # fraction of the photo a frame shows
        z0, z1 = base, base * g.uniform(0.8, 1.25)
        r0, r1 = np.radians(g.uniform(-5, 5, 2))
        c0, c1 = g.uniform(-0.5, 0.5, (2, 2)) * (1 - base)
        s = np.linspace(0, 1, T)
        s = s * s * (3 - 2 * s) if g.random() < 0.5 else s  # eased or linear
        theta = []
        for u in s:
            z, r = z0 + (z1 - z0) * u, r0 + (r1 - r0) * u
            cx, cy = c0 + (c1 - c0) * u
            ar = (w / h) if w > h else 1.0
            a = z * min(h, w) / w * (1 if w >= h else 1)
            b = z * min(h, w) / h
            theta.append([[a * math.cos(r), -a * math.sin(r) / ar if w > h else -a * math.sin(r), cx],
                          [b * math.sin(r), b * math.cos(r), cy]])
        grid = F.affine_grid(torch.tensor(theta, dtype=torch.float32), (T, 3, S, S), align_corners=False)
        clip = F.grid_sample(src[None].expand(T, -1, -1, -1), grid, mode="bilinear",
                             padding_mode="reflection", align_corners=False)  # (T, 3, S, S)
        if g.random() < 0.5:
            clip = self._sprite(clip)
        return clip.transpose(0, 1).contiguous()

    def _sprite(self, clip: torch.Tensor) -> torch.Tensor:
        g, T, S = self.g, self.frames, self.size
        im = self.src.photos[g.integers(len(self.src.photos))]
        k = int(g.integers(S // 6, S // 3))
        y, x = g.integers(0, im.shape[0] - k), g.integers(0, im.shape[1] - k)
        sprite = _to_video(im[None, y:y + k, x:x + k])[:, 0]
        p0, p1 = g.uniform(0, S - k, 2), g.uniform(0, S - k, 2)
        clip = clip.clone()
        for t in range(T):
            py, px = (p0 + (p1 - p0) * t / max(1, T - 1)).astype(int)
            clip[t, :, py:py + k, px:px + k] = sprite
        return clip

    def hard_case(self) -> torch.Tensor:
        """Thin lines, fine gratings, flat gradients and scrolling stripes: what tokenizers get wrong."""
        g, T, S = self.g, self.frames, self.size
        yy, xx = torch.meshgrid(torch.arange(S, dtype=torch.float32), torch.arange(S, dtype=torch.float32), indexing="ij")
        kind = g.integers(4)
        col = torch.tensor(g.uniform(-1, 1, (2, 3)), dtype=torch.float32)
        vx, vy = g.uniform(-2, 2, 2)
        freq, ang, per = g.uniform(0.05, 0.6), g.uniform(0, math.pi), int(g.integers(6, 24))
        glyphs = torch.tensor(g.random((S // 4, S // 2)) < 0.35, dtype=torch.float32)
        glyphs[1::3] = 0  # blank rows between "text" lines
        frames = []
        for t in range(T):
            x, y = xx + vx * t, yy + vy * t
            if kind == 0:  # grating
                m = 0.5 + 0.5 * torch.sin(freq * (x * math.cos(ang) + y * math.sin(ang)))
            elif kind == 1:  # thin lines
                m = ((x.floor() % per) < 1).float().maximum(((y.floor() % per) < 1).float())
            elif kind == 2:  # flat gradient
                m = ((x + y) / (2 * S)).clamp(0, 1)
            else:  # blocky "text-like" glyph rows scrolling
                m = glyphs[(y.long() // 4) % glyphs.shape[0], (x.long() // 2) % glyphs.shape[1]]
            frames.append(col[0][:, None, None] * (1 - m) + col[1][:, None, None] * m)
        return torch.stack(frames, dim=1)


class ClipStream(torch.utils.data.IterableDataset):
    """Endless batches (n, 3, T, S, S) for a DataLoader with workers: each worker samples with its
    own seed, `worker_seed(key, worker index)`, so no two workers repeat each other. `key` is a
    tuple of whole numbers >= 0 (the loop passes seed, rank and the step it starts from)."""

    def __init__(self, sources: Sources, frames: int, size: int, batch: int, key: tuple[int, ...], mix=DEFAULT_MIX):
        self.sources, self.frames, self.size, self.n, self.key, self.mix = sources, frames, size, batch, tuple(key), mix

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if info is not None:  # a worker process: its core is its own (never the trainer's threads)
            torch.set_num_threads(1)
        sampler = ClipSampler(self.sources, self.frames, self.size, seed=worker_seed(self.key, info.id if info else 0),
                              mix=self.mix)
        while True:
            yield sampler.batch(self.n)


def worker_seed(key: tuple[int, ...], worker: int) -> int:
    """The sampling seed of one ClipStream worker."""
    return int(np.random.SeedSequence([*key, worker]).generate_state(1)[0])


def fixed_set(sources: Sources, n: int, frames: int, size: int, seed: int = 1234) -> torch.Tensor:
    """A deterministic batch (n, 3, T, S, S) for validation."""
    return ClipSampler(sources, frames, size, seed=seed).batch(n)


if __name__ == "__main__":
    src = load_sources(sys.argv[1], "train")
    s = ClipSampler(src, 32, 128)
    s.batch(4)
    t = time.perf_counter()
    s.batch(64)
    dt = time.perf_counter() - t
    print(f"{len(src.videos)} videos, {len(src.photos)} photos; {64 / dt:.1f} clips/s of 32x128x128 on one thread")
