"""The package as a user gets it: installed (not editable) and run from another folder, it finds
its shipped checkpoints; a .vtk whose checkpoint is not installed is refused in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import run_cli, synth_frames, write_video

ROOT = Path(__file__).resolve().parents[1]


def _checkout_copy(dst: Path) -> Path:
    """What a clean clone holds that the build reads: pyproject, README, src/ (with its link to
    models/) and the shipped checkpoints (not models/superseded/)."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    shutil.copytree(ROOT / "src", dst / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (dst / "models").mkdir()
    for p in (ROOT / "models").glob("*.safetensors"):
        os.link(p, dst / "models" / p.name) if p.stat().st_dev == dst.stat().st_dev else shutil.copy2(p, dst / "models")
    return dst


def _build_offline() -> list[str]:
    """Build with this environment's setuptools when it can make wheels by itself (70.1 on, or with
    `wheel`): fast and offline. Otherwise let pip fetch the build requirements as usual."""
    try:
        from setuptools.command import bdist_wheel  # noqa: F401
    except ImportError:
        try:
            import wheel  # noqa: F401
        except ImportError:
            return []
    return ["--no-build-isolation", "--no-index"]


@pytest.mark.skipif(not (ROOT / "models" / "tivtok.safetensors").is_file(), reason="no shipped checkpoints")
def test_installed_package_finds_its_models_from_another_folder(tmp_path):
    src = _checkout_copy(tmp_path / "checkout")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # pip, setuptools: ours
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # the dependencies (torch, av, ...) come from this interpreter's site-packages, listed after
    # the venv's own, so the vtcodec imported is the one installed below, never this checkout's
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", *_build_offline(), str(src)], check=True,
                   capture_output=True)
    shutil.rmtree(src)  # nothing may still point into the checkout

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("VTCODEC_MODELS", "PYTHONPATH")}
    env["OMP_NUM_THREADS"] = "1"
    where = subprocess.run([py, "-c", "import vtcodec; from vtcodec.models.registry import resolve_model; "
                            "print(vtcodec.__file__); print(resolve_model('tivtok'))"], cwd=work, env=env,
                           check=True, capture_output=True, text=True).stdout.split()
    assert all(w.startswith(str(venv)) for w in where), where
    write_video(work / "in.mkv", synth_frames(8, 64, 48))
    exe = venv / "bin" / "vtcodec"
    listed = subprocess.run([exe, "models"], cwd=work, env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "tivtok" in listed.stdout
    enc = subprocess.run([exe, "encode", "in.mkv", "-o", "in.vtk", "--device", "cpu"], cwd=work, env=env,
                         capture_output=True, text=True)
    assert enc.returncode == 0, enc.stderr
    assert "(tivtok)" in enc.stdout
    dec = subprocess.run([exe, "decode", "in.vtk", "-o", "out.y4m", "--device", "cpu"], cwd=work, env=env,
                         capture_output=True, text=True)
    assert dec.returncode == 0, dec.stderr
    assert "8 frames 64x48" in dec.stdout


def test_missing_checkpoint_is_one_line_with_key_and_sha256(tmp_path, monkeypatch, capsys, make_video):
    from vtcodec.container import VtkReader

    src, _ = make_video("in.mkv", n=8, width=64, height=64)
    code, _, err = run_cli(capsys, ["encode", src, "-o", tmp_path / "in.vtk", "--model", "vidtok", "--device", "cpu"])
    assert code == 0, err
    with VtkReader(tmp_path / "in.vtk") as r:
        sha = r.header["checkpoint_sha256"]
    empty = tmp_path / "no_models"
    empty.mkdir()
    monkeypatch.setenv("VTCODEC_MODELS", str(empty))
    code, out, err = run_cli(capsys, ["decode", tmp_path / "in.vtk", "-o", tmp_path / "out.y4m", "--device", "cpu"])
    assert code == 1 and out.strip() == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "'vidtok'" in lines[0] and sha in lines[0] and "$VTCODEC_MODELS" in lines[0] and str(empty) in lines[0]
    assert not (tmp_path / "out.y4m").exists()
