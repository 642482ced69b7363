"""bench.clipset: a folder or one video prepared once and coded through the real codec."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import synth_frames, write_video
from vtcodec.bench.clipset import ClipSet, summary, videos_at
from vtcodec.codec import decode_frames
from vtcodec.models.registry import load_checkpoint
from vtcodec.tokens import read_tokens

pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_video_as_it_is_or_a_folder_resized(tmp_path, models_dir):
    frames = synth_frames(10, 40, 24)
    one = write_video(tmp_path / "a.mkv", frames)
    (tmp_path / "d").mkdir()
    shutil.copy(one, tmp_path / "d" / "b.mkv")
    (tmp_path / "d" / "notes.txt").write_text("not a video")
    assert videos_at(one) == [one] and videos_at(tmp_path / "d") == [tmp_path / "d" / "b.mkv"]
    assert videos_at(tmp_path / "d" / "notes.txt") == [] and videos_at(tmp_path / "missing") == []
    with ClipSet(one, frames=8, size=None) as cs:  # the first 8 frames at their own size
        (name, _, ref), = cs.clips
        assert name == "a" and ref.shape == (8, 24, 40, 3)
        np.testing.assert_array_equal(ref, frames[:8])  # written losslessly
        model = models_dir / "vidtok.safetensors"
        c, = cs.coded(model, decode=False)
        assert c.frames is None and c.result.frames == 8
        assert sum(t.n_frames for t in read_tokens(c.vtk)) == 8
        s, = cs.scores(model)
        c, = cs.coded(model)  # decoded: what scores measured
        np.testing.assert_array_equal(c.frames, decode_frames(c.vtk, device="cpu"))
        assert s.bpp == c.result.bpp and s.pixels == 8 * 24 * 40
        assert summary([s])["bpp_pooled"] == pytest.approx(s.bpp)
    with ClipSet(tmp_path / "d", frames=8, size=16) as cs:
        assert [(n, r.shape) for n, _, r in cs.clips] == [("b", (8, 16, 16, 3))]


def test_a_model_from_training_codes_to_as_many_bytes_as_its_checkpoint(tmp_path, models_dir):
    """`vtcodec train --val-codec` codes the in-memory model: its .vtk must be as large as the same
    weights' from a checkpoint file (a zero digest in the compressed header made it ~50
    bytes smaller, 2.5 % of a 32-frame 256x256 file)."""
    src = write_video(tmp_path / "a.mkv", synth_frames(8, 32, 32))
    ckpt = tmp_path / "val.safetensors"  # the key training's model carries: same header text
    shutil.copy(models_dir / "vidtok.safetensors", ckpt)
    with ClipSet(src, frames=8, size=None) as cs:
        trained = load_checkpoint(ckpt).eval()
        c, = cs.coded(trained, decode=False)
        in_memory = c.vtk.stat().st_size
        assert not hasattr(trained, "key") and not hasattr(trained, "sha256")  # named only while it coded
        early = cs.coded(trained, decode=False)
        next(early)
        assert trained.key == "val"
        early.close()  # a caller that stops early gets its model back unnamed too
        assert not hasattr(trained, "key") and not hasattr(trained, "sha256")
        c, = cs.coded(ckpt, decode=False)
        assert abs(c.vtk.stat().st_size - in_memory) <= 2
