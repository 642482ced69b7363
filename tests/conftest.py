"""Shared fixtures for the codec and CLI tests.

Tiny random-init checkpoints of every architecture (dim 32, one layer, 64-pixel tiles,
8-frame chunks) are written once per session into a temporary models directory, and every test
runs with $VTCODEC_MODELS pointing there. Test videos are synthetic (a gradient with a moving
square) and written losslessly, so every result is deterministic.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vtcodec.models.registry import build, save_checkpoint
from vtcodec.video import VideoWriter

NTSC = Fraction(30000, 1001)
ARCHS = ("tivtok", "tivtok2", "reftok", "vidtok", "convtok")
TINY = {
    "tivtok": dict(dim=32, heads=2, tiv_depth=1, tv_depth=1, dec_depth=1, n_tiv=16, n_tv=2, frames=8, tile=64,
               patch=16, head_width=8),
    "reftok": dict(dim=32, heads=2, enc_depth=1, dec_depth=1, frames=8, tile=64, intra_dim=32, intra_depth=1),
    "tivtok2": dict(dim=32, heads=2, enc_depth=1, dec_depth=1, frames=8, tile=64, intra_dim=32, intra_depth=1,
                    ref_path=3, intra_ctx=1),
    "vidtok": dict(channels=(8, 8, 8), frames=8, tile=64),
    # without the coarse path: at initialisation a coarse model decodes the same whatever its seed
    "convtok": dict(widths=(8, 8, 8), blocks=(1, 1, 1), levels=(5, 5, 5, 5), frames=8, key_channels=4,
                    next_channels=2, coarse=False),
}



def run_cli(capsys, argv) -> tuple[int, str, str]:
    """Run `vtcodec ARGV` in-process: (exit code, stdout, stderr); never a traceback."""
    from vtcodec.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return e.value.code, out, err


def save_tiny(arch: str, path: Path, seed: int = 0) -> str:
    """Save a tiny random-init checkpoint of `arch` at `path` (seeded); returns its sha256."""
    torch.manual_seed(seed)
    return save_checkpoint(build(arch, TINY[arch]), path)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    for arch in ARCHS:
        save_tiny(arch, d / f"{arch}.safetensors")
    return d


@pytest.fixture(autouse=True)
def _vtcodec_models(models_dir, monkeypatch):
    monkeypatch.setenv("VTCODEC_MODELS", str(models_dir))


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module (the machine is shared with training jobs), restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def synth_frames(n: int, width: int, height: int, *, cut_at: int | None = None, seed: int = 0) -> np.ndarray:
    """uint8 (n, H, W, 3): a drifting colour gradient with a white square moving across it.

    From frame `cut_at` on the picture is a different scene (inverted colours, another square
    path), i.e. a hard scene cut.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((n, height, width, 3), np.uint8)
    side = max(4, min(width, height) // 4)
    for t in range(n):
        cut = cut_at is not None and t >= cut_at
        f = np.empty((height, width, 3), np.float32)
        f[..., 0] = 255 * xx / max(width - 1, 1)
        f[..., 1] = 255 * yy / max(height - 1, 1)
        f[..., 2] = (96 + 6 * t + seed * 17) % 256
        f = (f + 3 * t) % 256
        if cut:
            f = 255 - f[::-1, ::-1]
        x0 = (2 * t if not cut else width - side - 2 * (t - cut_at)) % max(width - side, 1)
        y0 = (t if not cut else height // 2) % max(height - side, 1)
        f[y0:y0 + side, x0:x0 + side] = 0 if cut else 255
        out[t] = f.astype(np.uint8)
    return out


def write_video(path: str | Path, frames: np.ndarray, fps: Fraction = NTSC) -> Path:
    """Write frames losslessly (libx264rgb qp 0 for .mkv/.mp4: read back bit-exactly)."""
    with VideoWriter(path, frames.shape[2], frames.shape[1], fps, lossless=True) as w:
        w.write(frames)
    return Path(path)


@pytest.fixture
def make_video(tmp_path):
    """make_video(name, n, width, height, cut_at=None) -> (path, frames)."""

    def make(name: str = "in.mkv", n: int = 20, width: int = 97, height: int = 61, *,
             cut_at: int | None = None, fps: Fraction = NTSC):
        frames = synth_frames(n, width, height, cut_at=cut_at)
        return write_video(tmp_path / name, frames, fps), frames

    return make
