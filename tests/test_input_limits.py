"""The other untrusted inputs of issue 23: videos given to `encode` (picture-size and frame limits,
variable frame rates warned about) and outputs two writers race for (one wins, the other gets one
line), and checkpoints given by path (config checked, shapes compared before any weight exists)."""

from __future__ import annotations

import json
import time
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import run_cli, synth_frames
from vtcodec.container import SEGMENT, VtkReader, VtkWriter
from vtcodec.errors import OutputError, VideoError, VtcodecWarning
from vtcodec.video import VideoWriter, probe, read_frames

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


def _png(path, width, height):
    with VideoWriter(path, width, height, Fraction(25), lossless=True) as w:
        w.write(np.zeros((1, height, width, 3), np.uint8))


def test_encode_refuses_a_picture_over_the_limit_before_decoding_it(tmp_path, capsys):
    _png(f"{tmp_path}/big/", 4200, 2400)  # 10.08 M pixels: over the default 4096 x 2304
    code, out, err = run_cli(capsys, ["encode", tmp_path / "big", "-o", tmp_path / "o.vtk", "--model", "vidtok"])
    assert code == 1 and "over the 9437184-pixel limit" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.vtk").exists()


def test_picture_and_frame_limits_follow_the_environment(make_video, tmp_path, monkeypatch):
    src, _ = make_video("in.mkv", n=4, width=64, height=48)
    probe(src)
    monkeypatch.setenv("VTCODEC_MAX_PIXELS", str(64 * 48 - 1))
    with pytest.raises(VideoError, match="over the 3071-pixel limit"):
        probe(src)
    monkeypatch.delenv("VTCODEC_MAX_PIXELS")
    monkeypatch.setenv("VTCODEC_MAX_FRAMES", "3")
    with pytest.raises(VideoError, match="more than 3 frames"):
        probe(src)


def _vfr_video(path, pts):
    frames = synth_frames(len(pts), 64, 48)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264rgb", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "rgb24"
        s.time_base = Fraction(1, 1000)
        s.options = {"qp": "0"}
        for t, f in zip(pts, frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = t, Fraction(1, 1000)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def test_a_variable_frame_rate_is_warned_about(tmp_path, capsys):
    _vfr_video(tmp_path / "vfr.mkv", [0, 40, 80, 120, 400, 440, 480, 900])
    with pytest.warns(VtcodecWarning, match="variable frame rate"):
        info = probe(tmp_path / "vfr.mkv")
    assert info.fps_variable and info.frame_count == 8
    code, out, err = run_cli(capsys, ["encode", tmp_path / "vfr.mkv", "-o", tmp_path / "o.vtk", "--model", "vidtok"])
    assert code == 0 and err.count("warning: ") == 1 and "variable frame rate" in err, err


def test_a_constant_frame_rate_is_not_warned_about(make_video):
    src, _ = make_video("in.mkv", n=6, width=64, height=48)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not probe(src).fps_variable


@pytest.mark.parametrize("target", ["out/", "out.mp4", "out.y4m"])
def test_two_writers_to_one_output_one_wins_the_other_gets_one_line(target, tmp_path):
    frames = synth_frames(2, 32, 32)
    a, b = (VideoWriter(f"{tmp_path}/{target}", 32, 32, Fraction(25)) for _ in range(2))
    a.write(frames)
    b.write(frames[:1])
    a.close()
    with pytest.raises(OutputError, match="appeared while writing") as e:
        b.close()
    assert "\n" not in str(e.value)
    assert len(read_frames(tmp_path / target.rstrip("/"))) == 2  # the winner's, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.rstrip("/")]  # no temporary left


def test_two_vtk_writers_to_one_path(tmp_path):
    h = {"model": "m", "checkpoint_sha256": "ab" * 32, "width": 32, "height": 24, "fps": "25/1", "frame_count": 4,
         "chunk_frames": 4}
    writers = [VtkWriter(tmp_path / "o.vtk", h) for _ in range(2)]
    for i, w in enumerate(writers):
        w.begin_chunk(0, 0, 4, True)
        w.write_unit(SEGMENT, bytes([i]))
    writers[0].close()
    with pytest.raises(OutputError, match="appeared while writing"):
        writers[1].close()
    with VtkReader(tmp_path / "o.vtk") as r:
        assert [u.payload for u in r.units()] == [b"\x00"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.vtk"]


# ------------------------------------------------------------------------- checkpoints by path

def _forged(tmp_path, arch: str, **config):
    """The golden tiny checkpoint of `arch` with its metadata config changed; returns its path."""
    from safetensors.torch import load_file, save_file

    from vtcodec.models.registry import read_metadata

    src = ROOT / "tests" / "golden" / "codec" / f"{arch}.safetensors"
    meta = read_metadata(src)
    cfg = json.loads(meta["config"])
    raw = config.pop("_raw", None)
    cfg.update(config)
    meta["config"] = raw(json.dumps(cfg)) if raw else json.dumps(cfg)
    dst = tmp_path / f"{arch}-forged.safetensors"
    save_file(load_file(src), dst, metadata=meta)
    return dst


@pytest.mark.parametrize("arch,config,says", [
    ("reftok", dict(_raw=lambda t: t[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"), "small flat JSON"),
    ("reftok", dict(tile="64"), "'tile' = 64 is not a int"),
    ("reftok", dict(tile=7), "not a model the codec can run"),
    ("tivtok", dict(tile=7), "cannot build a tivtok model"),
    ("tivtok2", dict(tile=72), "not a model the codec can run"),
    ("reftok", dict(dim=-5), "'dim' = -5"),
    ("reftok", dict(dim=60000), "more than the 268435456 allowed"),
    ("tivtok2", dict(tile=4096), "not a model the codec can run"),
    ("vidtok", dict(channels=[60000, 60000, 60000]), "more than the 268435456 allowed"),
    ("vidtok", dict(_raw=lambda t: t.replace('"tile": 64', '"tile": 1e400')), "1e400"),
])
def test_a_forged_checkpoint_is_refused_before_its_weights_are_allocated(arch, config, says, tmp_path, make_video,
                                                                          capsys):
    ckpt = _forged(tmp_path, arch, **config)
    src, _ = make_video("in.mkv", n=4, width=64, height=48)
    t0 = time.perf_counter()
    code, out, err = run_cli(capsys, ["encode", src, "-o", tmp_path / "o.vtk", "--model", ckpt])
    assert code == 1 and says in err and len(err.strip().splitlines()) == 1, err
    assert time.perf_counter() - t0 < 5.0


def test_every_installed_checkpoint_passes_the_checks():
    from vtcodec.models.registry import check_checkpoint, read_metadata

    paths = sorted((ROOT / "models").rglob("*.safetensors")) + sorted((ROOT / "tests" / "golden").rglob("*.safetensors"))
    assert len(paths) >= 8
    for p in paths:
        check_checkpoint(p, read_metadata(p))
