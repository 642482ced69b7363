"""Tests for the `vtcodec` command line, driven through `main(argv)` (which exits via SystemExit).

Models are the tiny random-init checkpoints of conftest.py; videos are a few frames at <= 97x61.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ARCHS, NTSC, run_cli
from vtcodec.cli import main
from vtcodec.codec import decode_frames, encode_file
from vtcodec.container import VtkReader
from vtcodec.train.preview import write_png
from vtcodec.video import probe, read_frames


pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *argv) -> str:
    """Run the CLI and expect success; returns stdout."""
    code, out, err = run_cli(capsys, argv)
    assert code == 0, (out, err)
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_encode_decode_info(arch, make_video, tmp_path, capsys):
    src, _ = make_video("in.mkv", n=18, width=97, height=61)
    vtk, mp4 = tmp_path / "out.vtk", tmp_path / "out.mp4"

    out = run(capsys, "encode", src, "-o", vtk, "--model", arch, "--device", "cpu")
    m = re.search(r"(\d+) frames 97x61, (\d+) chunks \((\d+) key, (\d+) tiles refreshed\), (\d+) tokens, (\d+) bytes", out)
    assert m, out
    frames, chunks, _, _, tokens, size = map(int, m.groups())
    assert (frames, chunks, size) == (18, 3, vtk.stat().st_size)
    assert f"({arch})" in out

    # the CLI's defaults are the library's: the same bytes
    lib = encode_file(src, tmp_path / "lib.vtk", model=arch, device="cpu")
    assert (tmp_path / "lib.vtk").read_bytes() == vtk.read_bytes()
    assert lib.tokens == tokens

    out = run(capsys, "decode", vtk, "-o", mp4, "--device", "cpu", "--lossless")
    assert "18 frames 97x61" in out
    info = probe(mp4)
    assert (info.frame_count, info.width, info.height, info.fps) == (18, 97, 61, NTSC)
    assert np.array_equal(read_frames(mp4), decode_frames(vtk, device="cpu"))

    d = json.loads(run(capsys, "info", vtk, "--json"))
    assert d["tokens"] == tokens == lib.tokens
    assert d["header"]["model"] == arch and d["header"]["frame_count"] == 18
    assert d["chunks"] == 3 and d["file_bytes"] == size
    assert sum(s["tokens"] for s in d["streams"].values()) == tokens
    data = vtk.read_bytes()  # preamble: magic, u16 version, u32 stored header length
    assert d["header_bytes"] == int.from_bytes(data[10:14], "little") < len(json.dumps(d["header"]))

    text = run(capsys, "info", vtk)
    assert arch in text and "97x61" in text and "18 frames" in text
    assert f"header stored in {d['header_bytes']} bytes" in " ".join(text.split())


def test_decode_range_and_png_folder(make_video, tmp_path, capsys):
    src, _ = make_video("in.mkv", n=20, width=45, height=33)
    vtk = tmp_path / "v.vtk"
    run(capsys, "encode", src, "-o", vtk, "--model", "vidtok", "--segment", "1", "--refresh-db", "inf")
    with VtkReader(vtk) as r:
        assert [e.key for e in r.index] == [True, True, True]
        assert r.header["refresh_db"] is None
    full = decode_frames(vtk, device="cpu")

    out = run(capsys, "decode", vtk, "-o", f"{tmp_path}/frames/", "--start", "5", "--stop", "17")
    assert "12 frames" in out
    pngs = sorted((tmp_path / "frames").glob("*.png"))
    assert len(pngs) == 12
    assert np.array_equal(read_frames(tmp_path / "frames"), full[5:17])  # PNG frames are exact


@pytest.mark.parametrize("model", ["reftok", "tivtok2", "convtok"])  # tivtok2: the edited frame is the TIV image
def test_edit_command(make_video, tmp_path, capsys, model):
    src, _ = make_video("in.mkv", n=10, width=64, height=48)
    vtk = tmp_path / "r.vtk"
    run(capsys, "encode", src, "-o", vtk, "--model", model)
    ref = tmp_path / "edited.png"
    write_png(ref, np.full((48, 64, 3), (20, 200, 60), np.uint8))
    out = run(capsys, "edit", vtk, "--reference", ref, "-o", tmp_path / "edit.mkv", "--device", "cpu")
    assert "10 frames decoded against" in out
    run(capsys, "decode", vtk, "-o", tmp_path / "plain.mkv", "--lossless")
    edited, plain = read_frames(tmp_path / "edit.mkv"), read_frames(tmp_path / "plain.mkv")
    assert edited.shape == plain.shape == (10, 48, 64, 3)
    assert not np.array_equal(edited, plain)


def test_models_lists_the_installed_keys(models_dir, capsys):
    out = run(capsys, "models")
    for key in ARCHS:
        assert key in out
    assert "no checkpoints" not in out


def test_models_with_nothing_installed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VTCODEC_MODELS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    from vtcodec.models.registry import list_models

    if list_models():  # the repository's own models/ holds checkpoints: nothing to check here
        pytest.skip("checkpoints installed in the repository's models/")
    assert "no checkpoints" in run(capsys, "models")


def test_demo_on_a_given_video(make_video, tmp_path, capsys):
    src, _ = make_video("in.mkv", n=9, width=40, height=32)
    out = run(capsys, "demo", "--model", "vidtok", "--src", src, "--out", tmp_path / "demo", "--device", "cpu")
    assert "PSNR" in out and "9 frames, 40x32" in out
    assert (tmp_path / "demo" / "demo_vidtok.vtk").is_file()
    assert probe(tmp_path / "demo" / "demo_vidtok_recon.mp4").frame_count == 9


def test_usage_errors_are_click_errors(capsys, tmp_path):
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["encode", str(tmp_path / "x.mp4")])  # no --output
    _, err = capsys.readouterr()
    assert e.value.code == 2 and "Traceback" not in err and "--output" in err
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2


def test_help_lists_commands(capsys):
    out = run(capsys, "--help")
    for cmd in ("encode", "decode", "info", "models", "edit", "demo"):
        assert cmd in out
    assert "--output" in run(capsys, "encode", "--help")


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from vtcodec.cli import main\n"
        "assert 'torch' not in sys.modules, 'importing the CLI imported torch'\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules, '--help imported torch'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "encode" in r.stdout


def test_python_dash_m(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vtcodec", "--help"], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "decode" in r.stdout and "Usage" in r.stdout
    r = subprocess.run([sys.executable, "-m", "vtcodec", "info", str(tmp_path / "nope.vtk")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_console_script_entry_point():
    exe = Path(sys.executable).with_name("vtcodec")
    if not exe.is_file():
        pytest.skip("console script not installed next to this interpreter")
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "encode" in r.stdout
