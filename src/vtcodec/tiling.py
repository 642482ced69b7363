"""Chunking in time and tiling in space: any video size in, the model's fixed tile size out.

Frames smaller than a tile are padded (edge replicate) up to it; larger frames are covered by
overlapping tiles whose overlaps are blended with linear ramps at decode, so tile borders leave
no seams. Everything here is a pure function of the frame size and the tile/overlap settings, so
encoder and decoder derive the same layout from the header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vtcodec.limits import padded_size


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering [0, length) (length >= tile), overlaps >= `overlap`, spread evenly."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


@dataclass(frozen=True)
class TileLayout:
    """tile 0: one tile, the whole frame padded (edge replicate) to a multiple of vtcodec.limits.FRAME_MULTIPLE."""
    height: int   # original frame size
    width: int
    tile: int
    overlap: int

    @property
    def padded(self) -> tuple[int, int]:
        return padded_size(self.height, self.width, self.tile)

    @property
    def starts(self) -> tuple[list[int], list[int]]:
        if self.tile == 0:
            return [0], [0]
        ph, pw = self.padded
        return tile_starts(ph, self.tile, self.overlap), tile_starts(pw, self.tile, self.overlap)

    @property
    def count(self) -> int:
        ys, xs = self.starts
        return len(ys) * len(xs)

    def split(self, video: torch.Tensor) -> torch.Tensor:
        """(3, T, H, W) -> tiles (N, 3, T, tile, tile), padding small frames by edge replication."""
        ph, pw = self.padded
        if (ph, pw) != (self.height, self.width):
            video = F.pad(video, (0, pw - self.width, 0, ph - self.height), mode="replicate")
        if self.tile == 0:
            return video[None]
        ys, xs = self.starts
        k = self.tile
        return torch.stack([video[:, :, y:y + k, x:x + k] for y in ys for x in xs])

    def _ramp(self, n: int, lo_edge: bool, hi_edge: bool) -> torch.Tensor:
        # weight rises linearly across the overlap; frame borders keep full weight
        r = max(1, self.overlap)
        x = torch.arange(n, dtype=torch.float32) + 0.5
        w = torch.ones(n)
        if not lo_edge:
            w = torch.minimum(w, x / r)
        if not hi_edge:
            w = torch.minimum(w, (n - x) / r)
        return w

    def merge(self, tiles: torch.Tensor) -> torch.Tensor:
        """tiles (N, 3, T, tile, tile) -> (3, T, H, W) cropped to the original size, blended."""
        if self.tile == 0:
            return tiles[0].float()[:, :, : self.height, : self.width]
        ph, pw = self.padded
        ys, xs = self.starts
        k = self.tile
        _, c, t, _, _ = tiles.shape
        acc = torch.zeros(c, t, ph, pw)
        wsum = torch.zeros(ph, pw)
        i = 0
        for iy, y in enumerate(ys):
            wy = self._ramp(k, iy == 0, iy == len(ys) - 1)
            for ix, x in enumerate(xs):
                w = wy[:, None] * self._ramp(k, ix == 0, ix == len(xs) - 1)[None, :]
                acc[:, :, y:y + k, x:x + k] += tiles[i].float() * w
                wsum[y:y + k, x:x + k] += w
                i += 1
        return (acc / wsum)[:, :, : self.height, : self.width]


def tile_mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) mean squared error per tile of tile batches (N, 3, T, H, W) in [-1, 1], the
    reconstruction clamped to the pixel range as the codec outputs it (differentiable)."""
    return (recon.float().clamp(-1, 1) - target.float()).pow(2).flatten(1).mean(1)


def frames_to_video(frames: np.ndarray, chunk_frames: int) -> torch.Tensor:
    """uint8 (t, H, W, 3) -> float (3, chunk_frames, H, W) in [-1, 1]; a short last chunk repeats its last frame."""
    t = frames.shape[0]
    if t < chunk_frames:
        frames = np.concatenate([frames, np.repeat(frames[-1:], chunk_frames - t, axis=0)])
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1)


def video_to_frames(video: torch.Tensor, n: int) -> np.ndarray:
    """float (3, T, H, W) -> uint8 (n, H, W, 3), dropping padding frames."""
    v = ((video[:, :n].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return v.permute(1, 2, 3, 0).contiguous().numpy()
