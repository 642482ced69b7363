"""A PNG of original-vs-reconstruction frames, so a person can see training progress.

Written with zlib alone (no imaging library is a dependency).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """uint8 (H, W, 3) -> PNG file."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def preview(path: str | Path, target: torch.Tensor, recon: torch.Tensor, clips: int = 4, frames: int = 4) -> None:
    """Rows: clips; each row shows `frames` original frames, then the same reconstructed."""
    def u8(v):  # (3, T, H, W) -> (T, H, W, 3)
        return ((v.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()

    rows = []
    for i in range(min(clips, target.shape[0])):
        t, r = u8(target[i]), u8(recon[i])
        pick = np.linspace(0, t.shape[0] - 1, frames).astype(int)
        rows.append(np.concatenate([*t[pick], *r[pick]], axis=1))
    write_png(path, np.concatenate(rows, axis=0))
