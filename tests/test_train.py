"""Training: a short run on the bundled example finishes, writes a loadable checkpoint that decodes,
resume state round-trips, and a 2-process torchrun (gloo) run works."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vtcodec.cli import main
from vtcodec.bench.clipset import ClipScore, ClipSet
from vtcodec.codec import decode_frames, encode_file, load_tokenizer
from vtcodec.models.registry import build, load_checkpoint, read_metadata, save_checkpoint

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pan_astronaut.mp4"
TINY = json.dumps({"channels": [8, 8, 8]})
TINY_REF = json.dumps({"dim": 32, "heads": 2, "enc_depth": 1, "dec_depth": 1, "intra_dim": 32, "intra_depth": 1})


def _data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    shutil.copy(EXAMPLE, d)
    return d


def test_train_20_steps_on_bundled_example_loads_and_decodes(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "vidtok", "--data", str(_data(tmp_path)), "--out", str(out), "--steps", "20",
              "--batch", "2", "--val-every", "10", "--save-every", "10"])
    assert e.value.code == 0
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == list(range(1, 21))
    assert "val_psnr" in logs[-1] and np.isfinite(logs[-1]["loss"])
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads(read_metadata(out / "model.safetensors")["info"])
    assert info["step"] == 20
    model = load_checkpoint(out / "model.safetensors")
    model.key, model.sha256 = "trained", "0" * 64
    r = encode_file(EXAMPLE, tmp_path / "o.vtk", model=model)
    frames = decode_frames(tmp_path / "o.vtk", model=model)
    assert frames.shape == (r.frames, 256, 256, 3)


def test_val_codec_scores_the_checkpoint_through_the_codec(tmp_path, capsys, monkeypatch):
    """--val-codec: each validation also codes the folder's videos with the EMA weights through the
    real codec; the figures logged are what rd_sweep measures on the saved checkpoint."""
    out, vids, data = tmp_path / "run", tmp_path / "vids", _data(tmp_path)
    vids.mkdir()
    shutil.copy(EXAMPLE, vids / "a.mp4")
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "vidtok", "--config", TINY, "--data", str(data), "--out", str(out),
              "--steps", "2", "--batch", "1", "--val-every", "2", "--save-every", "2", "--val-codec", str(vids)])
    assert e.value.code == 0
    rec = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    model = load_tokenizer(out / "model.safetensors", "cpu")  # as rd_sweep loads it: its real digest in the header
    from vtcodec.bench.metrics import psnr_rgb
    from vtcodec.bench.prepare import fit_size, load_clip, write_lossless

    clip, info = load_clip(EXAMPLE, 32)
    ref, _ = write_lossless(fit_size(clip, 256, 256), tmp_path / "src.mkv", info.fps)
    r = encode_file(tmp_path / "src.mkv", tmp_path / "o.vtk", model=model)
    assert rec["val_codec_bpp"] == pytest.approx(r.bpp, rel=0.005)  # the saved EMA weights, coded again
    assert rec["val_codec_psnr"] == pytest.approx(psnr_rgb(ref, decode_frames(tmp_path / "o.vtk", model=model)), abs=0.1)
    assert 0 < rec["val_codec_ssim"] <= 1
    seen = []  # what it codes with: the EMA copy (no gradients), in eval mode
    monkeypatch.setattr(ClipSet, "scores", lambda self, m: seen.append(m) or iter([ClipScore("x", 0.0, 0.0, 0.0, 0.0, 1)]))
    with pytest.raises(SystemExit):
        main(["train", "--model", "vidtok", "--config", TINY, "--data", str(data), "--out", str(tmp_path / "run2"),
              "--steps", "1", "--batch", "1", "--val-codec", str(vids)])
    assert len(seen) == 1 and not seen[0].training and not any(p.requires_grad for p in seen[0].parameters())
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "vidtok", "--data", str(data), "--out", str(tmp_path / "bad"),
              "--steps", "1", "--val-codec", str(tmp_path / "nothing")])
    assert e.value.code == 1 and "--val-codec" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def _two_steps_saved(tmp_path, *extra: str) -> tuple[Path, list[str]]:
    """A tiny run stopped after 2 steps (saved): (its folder, the arguments that resume it)."""
    out = tmp_path / "run"
    args = ["train", "--model", "vidtok", "--config", TINY, "--data", str(_data(tmp_path)), "--out", str(out),
            "--batch", "1", "--val-every", "100", "--save-every", "2", *extra]
    with pytest.raises(SystemExit):
        main(args + ["--steps", "2"])
    return out, args


def test_resume_continues_from_saved_step(tmp_path):
    out, args = _two_steps_saved(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(args + ["--steps", "4", "--resume"])
    assert e.value.code == 0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_resume_of_a_run_saved_before_a_knob_existed(tmp_path, capsys):
    """A knob added to a step after a run was saved (ssim_weight) counts as its default
    on --resume; any other value is still refused."""
    init = tmp_path / "init.safetensors"
    save_checkpoint(build("vidtok", json.loads(TINY)), init)
    out, args = _two_steps_saved(tmp_path, "--part", "codec", "--init", str(init))
    meta = json.loads((out / "resume.json").read_text())
    assert meta["recipe"] == {"slope": 0.0, "ssim_weight": 0.0, "sat_weight": 0.0, "spread_weight": 0.0, "part": "codec"}
    del meta["recipe"]["ssim_weight"], meta["recipe"]["sat_weight"], meta["recipe"]["spread_weight"]  # as older runs saved it
    (out / "resume.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit) as e:
        main(args + ["--steps", "3", "--resume", "--recipe", '{"ssim_weight": 1}'])
    assert e.value.code == 1 and "pass the same --recipe" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(args + ["--steps", "3", "--resume"])
    assert e.value.code == 0
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_resume_keeps_the_runs_totals(tmp_path):
    """Skipped steps and wall time count from the start of the run, across a --resume."""
    out, args = _two_steps_saved(tmp_path)
    meta = json.loads((out / "resume.json").read_text())
    assert meta["totals"]["skipped"] == 0 and meta["totals"]["wall_s"] > 0
    meta["totals"] = {"skipped": 3, "wall_s": 1000.0}  # as if the first session had skipped 3 bad batches
    (out / "resume.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit):
        main(args + ["--steps", "4", "--resume"])
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in logs[2:]] == [3, 3]
    assert json.loads(read_metadata(out / "model.safetensors")["info"])["wall_s"] > 1000


def test_torchrun_two_cpu_processes(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not os.path.exists(torchrun):
        pytest.skip("torchrun not found")
    out = tmp_path / "ddp"
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "vtcodec", "train", "--model", "vidtok",
           "--config", TINY, "--data", str(_data(tmp_path)), "--out", str(out), "--steps", "3", "--batch", "1",
           "--val-every", "3", "--save-every", "3", "--device", "cpu"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2, 3]  # rank 0 logs once per step
    load_checkpoint(out / "model.safetensors")


def test_recipe_knobs_are_checked_and_recorded(tmp_path, capsys):
    out, data = tmp_path / "run", _data(tmp_path)
    args = ["train", "--model", "vidtok", "--config", TINY, "--data", str(data), "--out", str(out),
            "--batch", "1", "--steps", "1", "--val-every", "1"]
    with pytest.raises(SystemExit) as e:
        main(args + ["--recipe", '{"reuse_p": 0.9}'])
    assert e.value.code == 1 and "vidtok has no knob reuse_p" in capsys.readouterr().err
    tiny_tiv = json.dumps({"dim": 32, "heads": 2, "tiv_depth": 1, "tv_depth": 1, "dec_depth": 1, "n_tiv": 16,
                           "n_tv": 2, "head_width": 8, "patch": 32})
    args[2:3], args[4:5] = ["tivtok"], [tiny_tiv]
    with pytest.raises(SystemExit) as e:
        main(args + ["--recipe", '{"reuse_p": 1.0}'])
    assert e.value.code == 0
    info = json.loads(read_metadata(out / "model.safetensors")["info"])
    assert info["recipe"] == {"reuse_p": 1.0}


def test_recipe_values_must_be_shares(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "reftok", "--config", TINY_REF, "--data", str(_data(tmp_path)), "--out",
              str(tmp_path / "r"), "--batch", "1", "--steps", "1", "--recipe", '{"near_p": "0.5"}'])
    assert e.value.code == 1 and "near_p must be a number in [0, 1]" in capsys.readouterr().err


def test_default_recipe_draws_what_rounds_1_and_2_drew():
    """near_p 0 (the default) must not consume random numbers: a seed replays the earlier runs."""
    import torch

    from vtcodec.train.steps import reftok_step

    class Probe(torch.nn.Module):
        def forward(self, target, ref, use_intra_ref, drop):
            self.seen = (ref.clone(), use_intra_ref, drop.clone())
            return {"recon": target, "intra_recon": ref}

    clip = torch.rand(2, 3, 32, 16, 16) * 2 - 1
    p = Probe()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    reftok_step(p, clip, g1)
    gap = int(torch.randint(1, 17, (), generator=g2))  # what the earlier step drew, in its order
    use_intra = torch.rand((), generator=g2).item() < 0.3
    drop = torch.rand(2, generator=g2) < 0.1
    assert torch.equal(p.seen[0], clip[:, :, 16 - gap]) and p.seen[1] == use_intra and torch.equal(p.seen[2], drop)



def tiny_reftok_run(tmp_path: Path) -> tuple[list[str], Path]:
    """(the `vtcodec train` arguments of a tiny RefTok run on the bundled example, a one-step
    checkpoint of it to start parts from)."""
    base = ["train", "--model", "reftok", "--data", str(_data(tmp_path)), "--batch", "1", "--val-every", "2", "--save-every", "2"]
    with pytest.raises(SystemExit) as e:
        main(base + ["--config", TINY_REF, "--out", str(tmp_path / "full"), "--steps", "1"])
    assert e.value.code == 0
    return base, tmp_path / "full" / "model.safetensors"


def test_part_training_changes_only_that_part(tmp_path, capsys):
    base, init = tiny_reftok_run(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(base + ["--init", str(init), "--part", "intra", "--out", str(tmp_path / "part"), "--steps", "2", "--lr", "1e-2"])
    assert e.value.code == 0
    before, after = load_file(init), load_file(tmp_path / "part" / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("intra.") for k in changed)
    info = json.loads(read_metadata(tmp_path / "part" / "model.safetensors")["info"])
    assert info["recipe"] == {"part": "intra"}
    log = [json.loads(line) for line in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    # validation reports the intra stream's raw bits over one frame: 256 tokens x log2(64000) / 128^2
    assert log[-1]["val_bpp_raw_tokens"] == pytest.approx(256 * math.log2(64000) / 128**2)
    capsys.readouterr()
    for extra, msg in ((["--init", str(init), "--part", "head"], "reftok has no separately trainable part"),
                       (["--config", TINY_REF, "--part", "intra"], "give that model with --init"),
                       (["--init", str(init), "--part", "intra", "--compile"], "drop one of them"),
                       (["--init", str(init), "--part", "intra", "--config", '{"ref_path": 3}'], "fresh outside the part"),
                       (["--init", str(init), "--part", "intra", "--recipe", '{"near_p": 0.5}'], "reftok --part intra has no knob")):
        with pytest.raises(SystemExit) as e:
            main(base + extra + ["--out", str(tmp_path / "bad"), "--steps", "1"])
        assert e.value.code == 1 and msg in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()  # a refused run leaves no folder behind


def test_post_part_trains_only_the_detail_pass(tmp_path, capsys):
    """`--part post --config '{"post_width": N}'` adds the detail pass to a trained model and
    trains it alone on the codec's loop; without post_width there is nothing to train."""
    base, init = tiny_reftok_run(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(base + ["--init", str(init), "--config", '{"post_width": 4}', "--part", "post", "--out", str(tmp_path / "post"),
                     "--steps", "2", "--lr", "1e-2", "--recipe", '{"ssim_weight": 1}'])
    assert e.value.code == 0
    before, after = load_file(init), load_file(tmp_path / "post" / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)  # everything else frozen
    new = set(after) - set(before)
    assert new and all(k.startswith("post.") for k in new)
    assert after["post.out.3.weight"].abs().max() > 0  # the zero last layer moved
    meta = read_metadata(tmp_path / "post" / "model.safetensors")
    assert json.loads(meta["config"])["post_width"] == 4
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(base + ["--init", str(init), "--part", "post", "--out", str(tmp_path / "bad"), "--steps", "1"])
    assert e.value.code == 1 and "no parameters of that part" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_tivtok2_starts_from_a_reftok_run(tmp_path, capsys):
    """`--model tivtok2 --init <reftok checkpoint>`: the TivTok design on RefTok's network starts
    from its weights (nothing fresh), trains on the codec's loop and on its intra part (whose
    validation bits are the `tiv` stream's over one frame); an arch that cannot start from it is refused."""
    base, init = tiny_reftok_run(tmp_path)
    base = [a if a != "reftok" else "tivtok2" for a in base]
    for part, out in (("codec", "t2c"), ("intra", "t2i")):
        with pytest.raises(SystemExit) as e:
            main(base + ["--init", str(init), "--part", part, "--out", str(tmp_path / out), "--steps", "2"])
        assert e.value.code == 0
        meta = read_metadata(tmp_path / out / "model.safetensors")
        assert meta["arch"] == "tivtok2" and json.loads(meta["info"])["fresh_from_init"] == []
    log = [json.loads(line) for line in (tmp_path / "t2i" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["val_bpp_raw_tokens"] == pytest.approx(256 * math.log2(64000) / 128**2)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([a if a != "tivtok2" else "vidtok" for a in base] + ["--init", str(init), "--out", str(tmp_path / "bad"), "--steps", "1"])
    assert e.value.code == 1 and "not vidtok" in capsys.readouterr().err


def test_export_checkpoint_takes_a_part_from_a_part_run(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "export_checkpoint.py"
    base, full = tiny_reftok_run(tmp_path)
    with pytest.raises(SystemExit):
        main(base + ["--init", str(full), "--part", "intra", "--out", str(tmp_path / "part"), "--steps", "2", "--lr", "1e-2"])
    part = tmp_path / "part" / "model.safetensors"

    def export(*args):
        return subprocess.run([sys.executable, str(script), str(full), str(tmp_path / "x.safetensors"), *args],
                              capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert export("--part", f"intra={part}").returncode == 0
    out, a, b = load_file(tmp_path / "x.safetensors"), load_file(full), load_file(part)
    assert all(torch.equal(out[k], (b if k.startswith("intra.") else a)[k].half()) for k in out)
    assert json.loads(read_metadata(tmp_path / "x.safetensors")["info"])["parts"]["intra"]["recipe"] == {"part": "intra"}
    for bad, msg in ((f"intra={full}", "was not trained with --part intra"), (f"head={part}", "NAME one of ['intra', 'encoder']"),
                     (f"post={part}", "a --part post run is a whole model")):
        r = export("--part", bad)
        assert r.returncode == 1 and msg in r.stderr and "Traceback" not in r.stderr


def test_non_finite_steps_are_skipped_and_a_diverged_run_stops(tmp_path, monkeypatch):
    from vtcodec.errors import VtcodecError
    from vtcodec.train import loop, steps
    from vtcodec.train.loop import TrainOptions, train

    def poisoned(bad_steps):
        calls = iter(range(10**6))

        def step(model, clip, g, val=False):
            loss, recon, target, logs = steps.vidtok_step(model, clip, g, val)
            return (loss * float("nan") if not val and next(calls) in bad_steps else loss), recon, target, logs
        return step

    opt = dict(model="vidtok", data=str(_data(tmp_path)), batch=1, val_every=100, save_every=100, config=json.loads(TINY))
    monkeypatch.setitem(loop.STEPS, "vidtok", poisoned({1}))
    train(TrainOptions(out=str(tmp_path / "a"), steps=3, **opt))
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in log] == [0, 1, 1]
    assert all(torch.isfinite(t).all() for t in load_file(tmp_path / "a" / "model.safetensors").values())
    monkeypatch.setitem(loop.STEPS, "vidtok", poisoned(set(range(100))))
    with pytest.raises(VtcodecError, match="training diverged: 20 steps in a row"):
        train(TrainOptions(out=str(tmp_path / "b"), steps=30, **opt))


def test_ssim_loss_stays_finite_and_float32_under_bf16_autocast():
    from vtcodec.train.losses import ssim_frames
    g = torch.Generator().manual_seed(0)
    a = 0.5 + 0.01 * torch.rand(2, 3, 32, 32, generator=g)  # flat images: variances near zero cancel in bf16
    b = a + 0.002 * torch.randn(2, 3, 32, 32, generator=g)
    ref = ssim_frames(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = ssim_frames(a, b)
    assert s.dtype == torch.float32 and torch.isfinite(s) and s.item() == pytest.approx(ref.item(), abs=1e-6)


def test_workers_and_mix_train_record_and_resume(tmp_path, capsys, monkeypatch):
    """--workers cuts batches in worker processes (ClipStream); --mix sets the clip kinds' shares,
    is recorded in the checkpoint and the resume state, and a --resume with another mix is refused."""
    import vtcodec.train.loop as loop

    made = []

    class Counted(loop.ClipStream):
        def __init__(self, *args, **kw):
            made.append(kw["mix"])
            super().__init__(*args, **kw)

    monkeypatch.setattr(loop, "ClipStream", Counted)
    out, args = _two_steps_saved(tmp_path, "--workers", "2", "--mix", "0,1,1")
    assert made == [(0.0, 1.0, 1.0)]  # the run drew its clips from the worker stream, with its mix
    info = json.loads(read_metadata(out / "model.safetensors")["info"])
    assert info["mix"] == [0.0, 1.0, 1.0] and info["workers"] == 2
    assert json.loads((out / "resume.json").read_text())["mix"] == [0.0, 1.0, 1.0]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(args + ["--steps", "3", "--resume", "--mix", "1,1,1"])
    err = capsys.readouterr()
    assert e.value.code == 1 and "pass the same --mix" in err.err and "train vidtok" not in err.out  # no bar drawn
    with pytest.raises(SystemExit) as e:
        main(args + ["--steps", "3", "--resume", "--mix", "0,1,1", "--workers", "0"])
    assert e.value.code == 0 and len(made) == 1
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]


@pytest.mark.parametrize("mix, why", [("1,x,1", "numbers separated by commas"), ("", "numbers separated by commas"),
                                      ("1,1", "three finite shares"), ("1,-1,1", "three finite shares"),
                                      ("nan,1,1", "three finite shares"), ("inf,0,0", "three finite shares"),
                                      ("1e308,1e308,1", "finite sum"), ("0,0,0", "with a finite sum > 0"),
                                      ("0,1,0", "leaves no kind of clip to draw from this data (1 videos, 0 photographs)")])
def test_bad_mix_is_one_line_and_writes_nothing(tmp_path, capsys, mix, why):
    """Refused before anything is written, the last case only once the data are read (the example
    folder holds one video and no photographs)."""
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "vidtok", "--data", str(_data(tmp_path)), "--out", str(out), "--mix", mix])
    err = capsys.readouterr().err
    assert e.value.code == 1 and why in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_clip_stream_workers_draw_their_own_seeds_with_the_mix():
    """Each worker samples with worker_seed(key, its index) and the stream's mix; iterating the
    stream in the trainer's own process leaves its thread count alone."""
    from vtcodec.train.data import ClipSampler, ClipStream, Sources, worker_seed

    g = np.random.default_rng(0)
    src = Sources([g.integers(0, 255, (12, 48, 48, 3), dtype=np.uint8)], [g.integers(0, 255, (64, 64, 3), dtype=np.uint8)])
    mix = (0, 1, 0)  # photographs only
    stream = ClipStream(src, 4, 32, 2, key=(5, 0, 0), mix=mix)
    loader = iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2))
    a, b = next(loader), next(loader)  # one batch from each worker, in turn
    for got, worker in ((a, 0), (b, 1)):
        want = ClipSampler(src, 4, 32, seed=worker_seed((5, 0, 0), worker), mix=mix).batch(2)
        assert torch.equal(got, want)
    assert not torch.equal(a, b)
    other_mix = ClipSampler(src, 4, 32, seed=worker_seed((5, 0, 0), 0), mix=(1, 0, 0)).batch(2)
    assert not torch.equal(a, other_mix)  # the mix reached the workers' samplers
    threads = torch.get_num_threads()
    next(iter(ClipStream(src, 4, 32, 1, key=(5, 0, 0), mix=mix)))
    assert torch.get_num_threads() == threads


def test_same_seed_runs_draw_the_same_clips_and_repeat_exactly(tmp_path, monkeypatch):
    """What paired training runs rest on (a control run, repeated, reproduced its validation to the
    last digit): runs given the same seed, data, mix and batch draw the same clips in the same order
    whatever else the model's config changes (the tile, which sizes the clips, kept), and the same
    command twice logs the same losses."""
    from vtcodec.train.data import ClipSampler

    drawn: list[list[int]] = []
    real_batch = ClipSampler.batch

    def recording_batch(self, n):
        clips = real_batch(self, n)
        drawn[-1].append(hash(clips.numpy().tobytes()))
        return clips

    monkeypatch.setattr(ClipSampler, "batch", recording_batch)
    data = _data(tmp_path)
    losses = []
    for i, config in enumerate([TINY, TINY, json.dumps({"channels": [8, 16, 8]})]):
        drawn.append([])
        out = tmp_path / f"run{i}"
        with pytest.raises(SystemExit) as e:
            main(["train", "--model", "vidtok", "--config", config, "--data", str(data), "--out", str(out),
                  "--steps", "3", "--batch", "1", "--seed", "7", "--val-every", "100", "--save-every", "100"])
        assert e.value.code == 0
        losses.append([json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()])
    assert len(drawn[0]) == 4 and drawn[0] == drawn[1] == drawn[2]  # the validation set (fixed_set), then 3 steps
    assert losses[0] == losses[1] and losses[0] != losses[2]


def test_convtok_training_runs_saves_and_resumes(tmp_path):
    """python -m vtcodec.train.convtok: two steps write a resumable state and a checkpoint; a
    rerun with more steps continues from the saved step."""
    from vtcodec.models.registry import load_checkpoint
    from vtcodec.train import convtok

    media = tmp_path / "media"
    media.mkdir()
    (media / "ex.mp4").symlink_to(Path(__file__).parents[1] / "examples" / "pan_astronaut.mp4")
    run = tmp_path / "run"
    tiny = json.dumps({"widths": [8, 8, 8], "blocks": [1, 1, 1], "levels": [5, 5, 5, 5], "frames": 4,
                        "key_channels": 4, "next_channels": 2})
    common = [str(media), str(run), "--batch", "2", "--size", "32", "--workers", "0", "--val-every", "2"]
    convtok.main([*common, "--steps", "2", "--config", tiny])
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2] and "key_psnr_k2" in log[0]["val"]
    assert load_checkpoint(run / "model.safetensors").arch == "convtok"
    convtok.main([*common, "--steps", "4"])
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    # a module that starts as the identity joins on a resume; the other parameters keep their Adam state
    before = torch.load(run / "state.pt", weights_only=False)
    convtok.main([*common, "--steps", "6", "--config", json.dumps({"smooth_up": True})])
    after = torch.load(run / "state.pt", weights_only=False)
    assert after["step"] == 6 and after["config"]["smooth_up"] is True
    assert "dec_u4.smooth.weight" in load_checkpoint(run / "model.safetensors").state_dict()
    assert len(after["opt"]["state"]) == len(before["opt"]["state"]) + 4


def test_convtok_optimiser_state_follows_its_parameters_when_modules_join():
    """_opt_state_with renumbers a saved optimiser state by parameter name: the added parameters
    have none, every other keeps its own."""
    from vtcodec.train.convtok import _opt_state_with

    saved = {"state": {0: {"m": "a"}, 1: {"m": "c"}}, "param_groups": [{"lr": 1.0, "params": [0, 1]}]}
    out = _opt_state_with(saved, ["a", "b", "c"], {"b"})
    assert out["state"] == {0: {"m": "a"}, 2: {"m": "c"}}
    assert out["param_groups"] == [{"lr": 1.0, "params": [0, 1, 2]}]


def test_convtok_budget_run_sizes_itself_and_exports_float16(tmp_path, monkeypatch):
    """--budget-s: after CALIBRATE timed steps the run's length is what fits the budget (here a
    budget far below one step ends it there); --export writes the float16 checkpoint."""
    from vtcodec.models.registry import load_checkpoint
    from vtcodec.train import convtok

    monkeypatch.setattr(convtok, "CALIBRATE", 2)
    media = tmp_path / "media"
    media.mkdir()
    (media / "ex.mp4").symlink_to(Path(__file__).parents[1] / "examples" / "pan_astronaut.mp4")
    tiny = json.dumps({"widths": [8, 8, 8], "blocks": [1, 1, 1], "levels": [5, 5, 5, 5], "frames": 4,
                        "key_channels": 4, "next_channels": 2})
    export = tmp_path / "ship" / "convtok.safetensors"
    convtok.main([str(media), str(tmp_path / "run"), "--batch", "2", "--size", "32", "--workers", "0",
                  "--val-every", "50", "--steps", "1000", "--budget-s", "0.001", "--device", "cpu",
                  "--export", str(export), "--config", tiny])
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3]  # 2 calibration steps + the 1 the budget allows at least
    from safetensors.torch import load_file

    assert load_checkpoint(export).arch == "convtok" and load_file(str(export))["dec_in.weight"].dtype == torch.float16


def test_convtok_run_that_collapses_goes_back_to_its_best_state(tmp_path, monkeypatch):
    """A validation ROLLBACK_DB below the best restores the best state (weights and optimiser)
    at half the learning rate; best.safetensors keeps the best weights."""
    from vtcodec.train import convtok

    scores = iter([15.0, 16.0, 10.0, 16.5])
    monkeypatch.setattr(convtok, "validate", lambda model, val: {"key_psnr_k2": next(scores)})
    media = tmp_path / "media"
    media.mkdir()
    (media / "ex.mp4").symlink_to(Path(__file__).parents[1] / "examples" / "pan_astronaut.mp4")
    tiny = json.dumps({"widths": [8, 8, 8], "blocks": [1, 1, 1], "levels": [5, 5, 5, 5], "frames": 4,
                        "key_channels": 4, "next_channels": 2})
    run = tmp_path / "run"
    convtok.main([str(media), str(run), "--batch", "2", "--size", "32", "--workers", "0", "--val-every", "1",
                  "--steps", "4", "--config", tiny])
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r.get("rollback_to") for r in log] == [None, None, None, 2, None]
    assert log[3]["lr_scale"] == 0.5
    state = torch.load(run / "state.pt", weights_only=False)
    assert state["step"] == 4 and state["lr_scale"] == 0.5 and state["best"] == 16.5
    best = torch.load(run / "best.pt", weights_only=False)
    assert best["step"] == 4 and best["val"] == {"key_psnr_k2": 16.5}


def test_convtok_latents_past_the_fsq_range_are_pulled_back():
    """latent_excess is zero inside LATENT_BOUND and grows (with a gradient pointing back in) outside:
    the term that keeps a latent from drifting where FSQ's tanh gives it no gradient."""
    from vtcodec.train.convtok import LATENT_BOUND, latent_excess

    inside = torch.full((2, 3), LATENT_BOUND - 0.5, requires_grad=True)
    assert latent_excess(inside).item() == 0
    out = torch.tensor([LATENT_BOUND + 2.0, -(LATENT_BOUND + 1.0)], requires_grad=True)
    latent_excess(out).backward()
    assert latent_excess(out).item() == pytest.approx((4 + 1) / 2)
    assert out.grad[0] > 0 and out.grad[1] < 0  # descent moves both back towards the range


def test_convtok_rate_proxy_charges_digits_far_from_their_context_and_only_kept_ones():
    """rate_proxy: latents whose digits equal their neighbours' cost about nothing, noisy ones
    cost bits, channels past `keep` cost nothing, and the gradient pulls a digit towards the
    mean of its neighbours (the range coder's context)."""
    from vtcodec.models.convtok import ConvTok, ConvTokConfig
    from vtcodec.train.convtok import rate_proxy

    model = ConvTok(ConvTokConfig(widths=(8, 8, 8), blocks=(1, 1, 1), coarse=False))
    flat = torch.zeros(1, 4, 4, 16)
    noisy = torch.randn(1, 4, 4, 16, generator=torch.Generator().manual_seed(0)) * 2
    every, one = torch.tensor([16]), torch.tensor([1])
    assert rate_proxy(model, flat, every).item() < 0.01
    assert rate_proxy(model, noisy, every).item() > 1.0
    assert rate_proxy(model, noisy, one).item() < rate_proxy(model, noisy, every).item() / 4
    z = torch.zeros(1, 2, 2, 16)
    z[0, 1, 1, 0] = 1.0  # one digit above its neighbours (all at the middle level)
    z.requires_grad_(True)
    rate_proxy(model, z, every).sum().backward()
    assert z.grad[0, 1, 1, 0] > 0  # descent lowers it towards them

def test_cli_trains_convtok_and_refuses_what_it_does_not_take(tmp_path, capsys):
    """`vtcodec train --model convtok` runs the ConvTok trainer: a checkpoint that encodes; a
    second run into the same folder needs --resume; options of the other trainer are refused."""
    from vtcodec.codec import encode_file

    def run(argv) -> int:
        with pytest.raises(SystemExit) as e:
            main(argv)
        return e.value.code

    out = tmp_path / "run"
    tiny = json.dumps({"widths": [8, 8, 8], "blocks": [1, 1, 1], "levels": [5, 5, 5, 5], "key_channels": 4,
                       "next_channels": 2, "mode": "tiv"})
    args = ["train", "--model", "convtok", "--data", str(_data(tmp_path)), "--out", str(out),
            "--steps", "2", "--batch", "1", "--val-every", "2", "--config", tiny]
    assert run(args) == 0
    assert "checkpoint:" in capsys.readouterr().out
    r = encode_file(EXAMPLE, tmp_path / "o.vtk", model=out / "best.safetensors", quality=0)
    assert r.bytes > 0
    for extra, why in ([[], "add --resume"], [["--amp", "bf16"], "does not take --amp"]):
        assert run(args + extra) == 1
        assert why in capsys.readouterr().err
    assert run(args[:-2] + ["--resume", "--steps", "4"]) == 0
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [2, 4]
