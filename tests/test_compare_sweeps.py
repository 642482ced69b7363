"""benchmarks/compare_sweeps.py's equal-bits comparison: the base's curve read at the candidate's bits."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("compare_sweeps", Path(__file__).parents[1] / "benchmarks" / "compare_sweeps.py")
cs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cs)


def test_at_bits_is_linear_in_log_bits_and_flags_extension():
    pts = [(0.01, 20.0, 0.50), (0.0025, 18.0, 0.40)]  # unsorted on purpose
    p, s, out = cs.at_bits(pts, 0.005)  # the geometric midpoint
    assert (p, s, out) == (pytest.approx(19.0), pytest.approx(0.45), False)
    p, s, out = cs.at_bits(pts, 0.02)  # one log-step beyond the top: extended, and flagged
    assert (p, s, out) == (pytest.approx(21.0), pytest.approx(0.55), True)
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
    cand = _sweep(tmp_path / "c.txt", {"a": (0.0050, 19.5, 0.44), "b": (0.008, 21.0, 0.66)})
    monkeypatch.setattr(sys, "argv", ["compare_sweeps.py", lo, hi, cand])
    cs.main()
    out = capsys.readouterr().out.splitlines()
    assert "PSNR +0.50 dB  SSIM -0.0100" in out[0] and "PSNR +0.00 dB  SSIM +0.0100" in out[1]
    assert out[-1].startswith("at equal bits, mean over clips: PSNR +0.25 dB, SSIM +0.0000;")
    assert "PSNR on 2/2 clips, SSIM on 1/2; 0/2 outside" in out[-1]
    monkeypatch.setattr(sys, "argv", ["compare_sweeps.py", lo, _sweep(tmp_path / "x.txt", {"a": (0.005, 19, 0.4)})])
    with pytest.raises(SystemExit, match="different clips"):
        cs.main()
