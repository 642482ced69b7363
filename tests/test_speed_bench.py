"""benchmarks/speed.py and scripts/device_speed.py end to end on a tiny clip (tiny checkpoints from
conftest: the numbers mean nothing, the fields and their arithmetic are what is checked)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _script(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


speed = _script("benchmarks/speed.py")


def _env(tmp_path) -> dict:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def test_speed_benchmark_on_a_tiny_clip(tmp_path):
    out = tmp_path / "speed.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--sizes", "128x72", "--frames", "6",
                        "--model", "vidtok", "--device", "cpu", "--startup-repeats", "1", "--json", str(out)],
                       env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    for field in ("startup (median of 1", "vtcodec --help", "vtcodec models", "import + model load", "128x72, 6 frames",
                  "enc fps", "dec fps", "enc MB", "enc/x264", "vtcodec vidtok", "x264 medium", "SVT-AV1 preset 8",
                  "load average"):
        assert field in r.stdout, field
    res = json.loads(out.read_text())
    st = res["startup"]
    assert res["model"] == "vidtok" and st["arch"] == "vidtok" and len(st["sha256"]) == 64
    assert 0 < st["load_import_s"] + st["load_model_s"] < st["load_s"] and st["help_s"] > 0 and st["models_s"] > 0
    assert set(st["cpu_s"]) == {"help", "models", "load"} and min(st["cpu_s"].values()) > 0
    (size,) = res["sizes"]
    assert (size["width"], size["height"], size["frames"]) == (128, 72, 6)
    codecs = size["codecs"]
    assert list(codecs) == ["vtcodec vidtok", "x264 medium", "SVT-AV1 preset 8"]
    for name, c in codecs.items():
        for ph in ("enc", "dec"):
            assert c[f"{ph}_fps"] == pytest.approx(6 / c[f"{ph}_wall_s"])
            assert 0 < c[f"{ph}_net_s"] < c[f"{ph}_wall_s"] or c[f"{ph}_fps_net"] is None, name
            assert 10 < c[f"{ph}_peak_mb"] < 16000 and c[f"{ph}_cpu_s"] > 0
        assert c["bpp"] == pytest.approx(8 * c["bytes"] / (6 * 128 * 72))
        assert math.isfinite(c["psnr_rgb"]) and c["psnr_rgb"] > 5
    x264 = codecs["x264 medium"]
    assert x264["enc_vs_x264_enc"] == 1 and x264["enc_vs_x264_enc_net"] == pytest.approx(1)
    assert x264["psnr_rgb"] > 30  # the classical round trip is a real one
    v = codecs["vtcodec vidtok"]
    assert v["dec_vs_x264_enc"] == pytest.approx(v["dec_fps"] / x264["enc_fps"])
    if v["dec_fps_net"] is not None:  # a tiny decode can end sooner than the startup it is charged with
        assert v["dec_vs_x264_enc_net"] == pytest.approx(v["dec_fps_net"] / x264["enc_fps_net"])
    else:
        assert v["dec_vs_x264_enc_net"] is None
    assert res["load_average_1m"]["before"] >= 0


def test_classical_settings_import_without_torch():
    """speed.py's classical children take vtcodec.bench.classical's settings, and must not pay
    for torch in their start or memory."""
    r = subprocess.run([sys.executable, "-c", "import sys, vtcodec.bench.classical as c; c._spec('x264'); "
                        "assert 'torch' not in sys.modules"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_sizes_are_parsed_and_checked():
    assert speed.parse_size("1920x1080") == (1920, 1080)
    for bad in ("640", "640x", "641x360", "8x8", "axb"):
        with pytest.raises(Exception, match="size"):
            speed.parse_size(bad)


def test_run_child_measures_its_own_child_only(tmp_path):
    big = speed.run_child([sys.executable, "-c", "b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096])"], "big")
    small = speed.run_child([sys.executable, "-c", "pass"], "small")
    # neither RUSAGE_CHILDREN (the largest child so far) nor this 200+ MB process (a forked child's
    # ru_maxrss starts at its parent's RSS) may show up in the small one's figure
    assert big.peak_mb > 300 and small.peak_mb < 50
    with pytest.raises(SystemExit, match="exit 3"):
        speed.run_child([sys.executable, "-c", "import sys; sys.exit(3)"], "failing")


def test_device_speed_smoke_runs_on_cpu(tmp_path):
    out = tmp_path / "device.json"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "device_speed.py"), "--smoke", "--model", "vidtok",
                        "--json", str(out)], env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["model"] == "vidtok"
    (row,) = res["sizes"]
    assert row["size"] == "128x72" and row["frames"] == 4
    for k in ("enc_fps", "dec_fps"):
        assert row[k] > 0
    assert "enc fps" in r.stdout and "128x72" in r.stdout
