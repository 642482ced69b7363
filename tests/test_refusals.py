"""Bad input is refused with one clear line, before anything is written, and never costs an input:
the cases an audit of the command line found (an output that is a checkpoint, a reference,
a special file or a demo's own source; settings that crashed or were silently ignored; training
options; SIGTERM mid-write).

Models are the tiny random-init checkpoints of conftest.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from vtcodec.errors import OutputError
from vtcodec.atomic import temp_beside

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
GOLDEN_VTK = ROOT / "tests" / "golden" / "v1_minimal.vtk"


def refused(capsys, *argv, says: str) -> str:
    """Run the CLI, expect exit 1 with `says` on one line of stderr; returns stderr."""
    code, out, err = run_cli(capsys, argv)
    assert code == 1 and says in err, (code, out, err)
    assert len(err.strip().splitlines()) == 1, err
    return err


def _snapshot(*paths: Path) -> dict:
    return {p: (p.read_bytes() if p.is_file() else sorted(x.name for x in p.iterdir())) for p in paths}


def test_encode_never_writes_over_its_checkpoint_or_a_special_file(make_video, models_dir, tmp_path, capsys):
    src, _ = make_video("in.mkv", n=4, width=64, height=64)
    ckpt = tmp_path / "mine.safetensors"
    ckpt.write_bytes((models_dir / "vidtok.safetensors").read_bytes())
    before = _snapshot(ckpt)
    refused(capsys, "encode", src, "-o", ckpt, "--model", ckpt, "--force", says="is an input")
    fifo = tmp_path / "pipe.vtk"
    os.mkfifo(fifo)
    refused(capsys, "encode", src, "-o", fifo, "--model", "vidtok", "--force", says="not a regular file")
    assert _snapshot(ckpt) == before and fifo.is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv", "mine.safetensors", "pipe.vtk"]


@pytest.mark.parametrize("option,value,says", [("--tile-batch", "0", "tile_batch must be a whole number >= 1"),
                                               ("--segment", "0", "segment_chunks must be a whole number >= 1"),
                                               ("--refresh-db", "nan", "refresh_db must be a number of dB")])
def test_encode_settings_that_used_to_crash_or_be_ignored(option, value, says, make_video, tmp_path, capsys):
    src, _ = make_video("in.mkv", n=4, width=64, height=64)
    refused(capsys, "encode", src, "-o", tmp_path / "o.vtk", "--model", "vidtok", option, value, says=says)
    assert not (tmp_path / "o.vtk").exists()


@pytest.mark.parametrize("name,says", [("out.mp4", "name it 'out.vtk'"), ("frame.PNG", "name it 'frame.vtk'"),
                                       ("clip.hevc", "name it 'clip.vtk'"),
                                       ("-", "standard output) is not supported")])
def test_encode_refuses_a_token_file_named_like_a_video_or_stdout(name, says, make_video, tmp_path, capsys, monkeypatch):
    src, _ = make_video("in.mkv", n=4, width=64, height=64)
    monkeypatch.chdir(tmp_path)
    refused(capsys, "encode", src, "-o", name, "--model", "vidtok", says=says)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]


def test_edit_never_writes_over_its_reference(make_video, tmp_path, capsys):
    ref, _ = make_video("ref.mkv", n=2, width=64, height=64)
    before = _snapshot(ref)
    refused(capsys, "edit", GOLDEN_VTK, "--reference", ref, "-o", ref, "--force", says="is an input")
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "000000.png").write_bytes(b"not really a png")
    refused(capsys, "edit", GOLDEN_VTK, "--reference", frames, "-o", f"{frames}/", "--force", says="is an input")
    assert _snapshot(ref) == before and [p.name for p in frames.iterdir()] == ["000000.png"]


def test_demo_never_writes_over_its_source_and_leaves_no_folder_when_refused(make_video, tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    src, _ = make_video("demo/demo_vidtok_recon.mp4", n=4, width=64, height=64)
    before = _snapshot(Path(src))
    refused(capsys, "demo", "--model", "vidtok", "--src", src, "--out", out, says="is the input file")
    assert _snapshot(Path(src)) == before
    refused(capsys, "demo", "--model", "vidtok", "--src", tmp_path / "missing.mp4", "--out", tmp_path / "d2", says="missing.mp4")
    refused(capsys, "demo", "--model", "nonexistent", "--src", src, "--out", tmp_path / "d3", says="nonexistent")
    assert not (tmp_path / "d2").exists() and not (tmp_path / "d3").exists()


def test_bench_checks_its_result_paths_before_the_run(make_video, tmp_path, capsys):
    src, _ = make_video("in.mkv", n=4, width=64, height=64)
    before = _snapshot(Path(src))
    common = ["bench", "--model", "vidtok", "--frames", "2", "--data", src]
    refused(capsys, *common, "--json", src, says="is one of the input videos")
    refused(capsys, *common, "--json", tmp_path / "nodir" / "r.json", says="existing folder")
    refused(capsys, *common, "--json", tmp_path, says="existing folder")
    (tmp_path / "empty").mkdir()
    refused(capsys, "bench", "--model", "vidtok", "--data", tmp_path / "empty", says="holds no videos")
    assert _snapshot(Path(src)) == before


def test_bench_rewrites_its_own_results_file_in_a_data_folder(make_video, tmp_path, capsys):
    """Only videos and frames of a --data folder are inputs: a results file beside them is not."""
    clips = tmp_path / "clips"
    clips.mkdir()
    make_video("clips/in.mkv", n=4, width=64, height=64)
    (clips / "results.json").write_text("{}")
    code, _, err = run_cli(capsys, ["bench", "--model", "vidtok", "--frames", "2", "--data", clips,
                                    "--json", clips / "results.json", "--plot", clips / "rd.svg"])
    if "matplotlib" in err:
        pytest.skip("vtcodec[plot] not installed")
    assert code == 0, err
    assert json.loads((clips / "results.json").read_text())["schema"].startswith("vtcodec-bench")
    assert (clips / "rd.svg").read_bytes().lstrip().startswith((b"<?xml", b"<svg"))  # the suffix's format


def test_a_path_too_long_is_an_output_error(make_video, tmp_path, capsys):
    src, _ = make_video("in.mkv", n=4, width=64, height=64)
    refused(capsys, "encode", src, "-o", tmp_path / ("x" * 300 + ".vtk"), "--model", "vidtok", says="output")


def test_a_run_stopped_before_its_first_save_can_be_started_again(train_args, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text("")  # what a run interrupted before step 1's save leaves
    code, _, err = run_cli(capsys, [*train_args, "--out", run])
    assert code == 0, err and (run / "model.safetensors").is_file()


def test_a_temporary_file_that_cannot_be_made_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="cannot write"):
        temp_beside(tmp_path / "no" / "such" / "folder" / "o.mp4")


@pytest.fixture
def train_args(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "clip.mp4").write_bytes((ROOT / "examples" / "pan_astronaut.mp4").read_bytes())
    return ["train", "--model", "vidtok", "--config", json.dumps({"channels": [8, 8, 8]}), "--data", data,
            "--batch", "1", "--steps", "1", "--val-every", "1", "--device", "cpu"]


@pytest.mark.parametrize("extra,says", [(["--steps", "0"], "--steps must be a whole number >= 1"),
                                        (["--batch", "-2"], "--batch must be a whole number >= 1"),
                                        (["--val-every", "0"], "--val-every must be"),
                                        (["--save-every", "0"], "--save-every must be"),
                                        (["--lr", "nan"], "--lr must be a finite number > 0"),
                                        (["--lr", "-1"], "--lr must be a finite number > 0"),
                                        (["--amp", "bogus"], "--amp must be one of auto, bf16, fp32"),
                                        (["--data", "/nonexistent/media"], "--data /nonexistent/media: not a folder")])
def test_train_options_are_checked_before_anything_is_written(train_args, extra, says, tmp_path, capsys):
    refused(capsys, *train_args, "--out", tmp_path / "run", *extra, says=says)
    assert not (tmp_path / "run").exists()


def test_train_never_overwrites_a_run_or_a_file_and_keeps_to_its_model(train_args, models_dir, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, [*train_args, "--out", run])
    assert code == 0, err
    before = _snapshot(run / "model.safetensors", run / "log.jsonl")
    refused(capsys, *train_args, "--out", run, says="already holds a run")  # without --resume
    assert _snapshot(run / "model.safetensors", run / "log.jsonl") == before
    (tmp_path / "afile").write_text("x")
    refused(capsys, *train_args, "--out", tmp_path / "afile", says="is not a folder")
    tiv = [a if a != "vidtok" else "tivtok" for a in train_args]
    refused(capsys, *tiv, "--init", models_dir / "vidtok.safetensors", "--out", tmp_path / "r2",
            says="is a vidtok checkpoint, not tivtok")
    assert not (tmp_path / "r2").exists()


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_sigterm_mid_write_leaves_nothing_behind(command, tmp_path):
    """kill / timeout send SIGTERM: the command stops with status 143 and one line, and the
    temporary output it was writing is removed, as on Ctrl-C."""
    example, model = ROOT / "examples" / "pan_astronaut.mp4", str(ROOT / "models" / "vidtok.safetensors")
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # the shipped baseline: slow enough to be caught mid-write
    src = example
    if command == "decode":
        src = tmp_path / "in.vtk"
        subprocess.run([sys.executable, "-m", "vtcodec", "encode", str(example), "-o", str(src), "--model", model],
                       check=True, capture_output=True, env=env)
    out = tmp_path / "w"
    out.mkdir()
    dst = out / ("o.vtk" if command == "encode" else "o.mp4")
    p = subprocess.Popen([sys.executable, "-m", "vtcodec", command, str(src), "-o", str(dst)]
                         + (["--model", model] if command == "encode" else []),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    t0 = time.monotonic()
    while not any(out.iterdir()) and p.poll() is None and time.monotonic() - t0 < 120:
        time.sleep(0.01)
    if p.poll() is not None:
        pytest.skip(f"{command} finished before a temporary file was seen; nothing to interrupt")
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    if p.returncode == 0:
        pytest.skip(f"{command} finished before SIGTERM arrived")
    assert p.returncode == 128 + signal.SIGTERM and err.decode().strip() == "terminated", err.decode()[-2000:]
    assert list(out.iterdir()) == []


def test_options_take_numpy_integers(tmp_path):
    import numpy as np

    from vtcodec.train.loop import TrainOptions

    opt = TrainOptions(model="vidtok", data=str(tmp_path), out=str(tmp_path / "run"), steps=np.int64(5), batch=np.int32(2))
    assert opt.problem() is None


def test_an_interruption_is_held_only_by_the_main_threads_sections():
    """Signal handlers run on the main thread: another thread inside held_signals() must not
    defer the main thread's interruption (it would then be raised in that other thread)."""
    import threading

    from vtcodec.errors import held_signals, interrupt

    inside, release = threading.Event(), threading.Event()

    def worker():
        with held_signals():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(10)
    try:
        with pytest.raises(KeyboardInterrupt):
            interrupt(KeyboardInterrupt())  # as the main thread's handler would
    finally:
        release.set()
        t.join()
    with pytest.raises(KeyboardInterrupt):  # and the main thread's own section holds it until its end
        with held_signals():
            interrupt(KeyboardInterrupt())
            held = True
    assert held
    with pytest.raises(KeyboardInterrupt) as caught:  # a section that then fails still stops as interrupted
        with held_signals():
            interrupt(KeyboardInterrupt())
            raise OSError("disk full")
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(OSError):  # and nothing stays pending for the next section
        with held_signals():
            raise OSError("disk full")


@pytest.mark.parametrize("value,shown", [(np.int64(0), "got 0"), (-3, "got -3"), (2.5, "got 2.5"), (True, "got True"),
                                         ("4", "got '4'")])
def test_whole_number_message_shows_the_value_as_typed(value, shown):
    """numpy integers print as plain numbers (not np.int64(0)); other types keep their repr."""
    from vtcodec.errors import whole_number_problem

    assert whole_number_problem("n", value).endswith(shown)
    assert whole_number_problem("n", np.int64(3)) is None


@pytest.mark.parametrize("argv, why", [(["encode"], "Missing argument"),
                                       (["train", "--model", "vidtok", "--data", ".", "--out", "x", "--steps", "abc"],
                                        "Invalid value for '--steps'")])
def test_usage_errors_are_one_plain_error_line(argv, why, capsys):
    """Click's own usage errors: the usage line, a hint, and the error on one line (no rich box
    that wraps the message over several lines)."""
    code, _, err = run_cli(capsys, argv)
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 2 and len(errors) == 1 and why in errors[0], err
    assert "╭" not in err and "│" not in err
