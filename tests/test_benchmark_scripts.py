"""Every script in benchmarks/ runs: a smoke test each, on tiny inputs and the tiny test checkpoints
($VTCODEC_MODELS, conftest), and compare_sweeps.py's equal-bits arithmetic (the base's curve read
at the candidate's bits)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import synth_frames, write_video


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cs = _script("compare_sweeps")


def test_at_bits_is_linear_in_log_bits_and_flags_extension():
    pts = [(0.01, 20.0, 0.50), (0.0025, 18.0, 0.40)]  # unsorted on purpose
    p, s, out = cs.at_bits(pts, 0.005)  # the geometric midpoint
    assert (p, s, out) == (pytest.approx(19.0), pytest.approx(0.45), False)
    p, s, out = cs.at_bits(pts, 0.02)  # one log-step beyond the top: extended, and flagged
    assert (p, s, out) == (pytest.approx(21.0), pytest.approx(0.55), True)
    p, s, out = cs.at_bits(pts, 0.00125)  # one log-step below the bottom
    assert (p, s, out) == (pytest.approx(17.0), pytest.approx(0.35), True)
    three = pts + [(0.04, 21.0, 0.52)]  # the segment around the bits is used, not the ends
    assert cs.at_bits(three, 0.02)[:2] == (pytest.approx(20.5), pytest.approx(0.51))
    with pytest.raises(SystemExit):
        cs.at_bits([(0.01, 20.0, 0.5), (0.01, 21.0, 0.6)], 0.01)


def _sweep(path: Path, rows: dict[str, tuple[float, float, float]]) -> str:
    path.write_text("".join(f"  {k}: bpp {b:.5f}  PSNR {p:.2f} dB  SSIM {s:.4f}  encode 1.0 s\n"
                            for k, (b, p, s) in rows.items()) + "model refine 0: summary line\n")
    return str(path)


def test_main_compares_at_equal_bits(tmp_path, monkeypatch, capsys):
    lo = _sweep(tmp_path / "lo.txt", {"a": (0.0025, 18.0, 0.40), "b": (0.004, 20.0, 0.60)})
    hi = _sweep(tmp_path / "hi.txt", {"a": (0.0100, 20.0, 0.50), "b": (0.016, 22.0, 0.70)})
    cand = _sweep(tmp_path / "c.txt", {"a": (0.0050, 19.5, 0.44), "b": (0.008, 21.1, 0.66)})
    monkeypatch.setattr(sys, "argv", ["compare_sweeps.py", lo, hi, cand])
    cs.main()
    out = capsys.readouterr().out.splitlines()
    assert "PSNR +0.50 dB  SSIM -0.0100" in out[0] and "PSNR +0.10 dB  SSIM +0.0100" in out[1]
    assert out[-1].startswith("at equal bits, mean over clips: PSNR +0.30 dB, SSIM +0.0000;")
    assert "PSNR on 2/2 clips, SSIM on 1/2; 0/2 outside" in out[-1]
    monkeypatch.setattr(sys, "argv", ["compare_sweeps.py", lo, _sweep(tmp_path / "x.txt", {"a": (0.005, 19, 0.4)})])
    with pytest.raises(SystemExit, match="different clips"):
        cs.main()


def _run(monkeypatch, name: str, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *map(str, argv)])
    _script(name).main()


def test_make_val_clips_writes_the_last_part_of_each_video(tmp_path, capsys):
    (tmp_path / "media" / "sub").mkdir(parents=True)
    write_video(tmp_path / "media" / "sub" / "clip.mkv", synth_frames(20, 32, 24))
    _script("make_val_clips").main(str(tmp_path / "media"), str(tmp_path / "val"))
    from vtcodec.video import read_frames

    val = read_frames(tmp_path / "val" / "clip_val.mkv")
    assert val.shape == (3, 24, 32, 3)  # the last 15 % of 20 frames
    np.testing.assert_array_equal(val, synth_frames(20, 32, 24)[17:])
    assert "clip_val.mkv: 3 frames 32x24" in capsys.readouterr().out


def test_make_photo_val_clips_pans_over_the_held_out_photographs(tmp_path, monkeypatch, capsys):
    from PIL import Image

    (tmp_path / "media").mkdir()
    rng = np.random.default_rng(0)
    for name in ("flower", "not_held_out"):  # flower is one of the held-out photographs
        Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(tmp_path / "media" / f"{name}.png")
    _run(monkeypatch, "make_photo_val_clips", tmp_path / "media", tmp_path / "val", "--frames", 4, "--size", 32)
    assert sorted(p.name for p in (tmp_path / "val").iterdir()) == ["flower_pan.mkv"]
    assert "flower_pan.mkv: 4 frames 32x32" in capsys.readouterr().out
    _run(monkeypatch, "make_photo_val_clips", tmp_path / "media", tmp_path / "train", "--frames", 4, "--size", 32,
         "--split", "train")
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["not_held_out_pan.mkv"]


def test_rd_sweep_prints_a_row_per_clip_and_a_summary_per_value(tmp_path, monkeypatch, capsys):
    (tmp_path / "val").mkdir()
    for i in range(2):
        write_video(tmp_path / "val" / f"c{i}.mkv", synth_frames(8, 64, 64))
    _run(monkeypatch, "rd_sweep", tmp_path / "val", "vidtok", "refresh_db=1,inf", "--frames", 8, "--size", 64,
         "--per-clip", "--set", "overlap=0")
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in out if line.startswith("  ")] == ["c0", "c1"] * 2
    summaries = [line for line in out if line.startswith("vidtok refresh_db")]
    assert len(summaries) == 2 and all("2 clips, bpp " in line and "overlap 0" in line for line in summaries)
    # and what compare_sweeps reads from such a file
    (tmp_path / "sweep.txt").write_text("\n".join(out) + "\n")
    assert sorted(cs.read(str(tmp_path / "sweep.txt"))) == ["c0", "c1"]


def test_memory_measures_encode_and_decode_peaks(monkeypatch, capsys):
    _run(monkeypatch, "memory", "--model", "vidtok", "--lengths", 8, 16, "--size", "64x48")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "model vidtok, 64x48"
    for line, n in zip(out[2:4], ("8", "16")):
        frames, raw, enc, dec = line.split()
        assert frames == n and float(enc) > 0 and float(dec) > 0
    assert out[4].startswith("16 frames / 8 frames: encode ") and out[4].endswith("x")


def test_tokenize_speed_compares_tokenize_with_a_serial_loop(models_dir, monkeypatch, capsys):
    """Two tiny clips through both paths (local Ray on 2 CPUs): the report's lines and a speed-up."""
    pytest.importorskip("ray")
    ts = _script("tokenize_speed")
    monkeypatch.setattr(sys, "argv", ["tokenize_speed.py", "--clips", "2", "--frames", "8", "--size", "64",
                                      "--model", str(models_dir / "vidtok.safetensors")])
    ts.main()
    out = capsys.readouterr().out
    assert "serial encode loop:" in out and "vtcodec tokenize:" in out
    speedup = float(out.split("speed-up: ")[1].split("x")[0])
    assert speedup > 0
