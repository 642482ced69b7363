"""Benchmark scripts' arithmetic: compare_sweeps.py's equal-bits comparison (the base's curve read at
the candidate's bits) and paired_runs.py's step-by-step difference of two runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest



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


def test_paired_runs_differences_step_by_step(tmp_path, monkeypatch, capsys):
    import json

    pr = _script("paired_runs")
    for name, shift in (("a", 0.0), ("b", 1.0)):
        (tmp_path / name).mkdir()
        rows = [{"step": s, "mse_db": -12.0 + s % 3 + (shift if s > 2 else 0), "ssim": 0.5, "soft_bits": 100.0}
                for s in range(1, 5)]
        rows[3]["val_psnr"] = 18.0 + shift
        rows[3]["val_time_s"] = 5.0 + shift  # a duration, not a figure: not printed
        (tmp_path / name / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(sys, "argv", ["paired_runs.py", str(tmp_path / "a"), str(tmp_path / "b"), "--window", "2"])
    pr.main()
    out = capsys.readouterr().out.splitlines()
    assert "steps     1-    2: MSE dB +0.000 +- 0.000" in out[1]
    assert "steps     3-    4: MSE dB +1.000 +- 0.000  SSIM +0.0000" in out[2]
    assert out[3].endswith("val_psnr 18.0000 -> 19.0000")


def test_frame_ssim_groups_frames_over_clips():
    fs = _script("frame_ssim")
    a = np.array([0.1, 0.3, 0.5, 0.7, 0.9])  # a 5th frame beyond the last whole group is left out
    b = np.array([0.3, 0.5, 0.7, 0.9, 0.0, 0.0])
    np.testing.assert_allclose(fs.group_means([a, b], 2), [0.3, 0.7])
    with pytest.raises(SystemExit, match="shorter than one group"):
        fs.group_means([a[:1]], 2)
