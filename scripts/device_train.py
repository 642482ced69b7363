"""Training on a borrowed GPU machine that has no PyAV: ConvTok's lineage, and `vtcodec train --part codec`.

    # ConvTok (the lineage: continue from the committed checkpoint, or a run's float16 export):
    python scripts/device_train.py convtok INIT BUDGET_S WORKERS BATCH LR
    # e.g. timeout 560 python scripts/device_train.py convtok models/tivtok.safetensors 500 7 32 1e-3
    # -> $OUT/convtok.safetensors (float16, at every validation) and $OUT/convtok.log.jsonl

    OMP_NUM_THREADS=2 python scripts/device_train.py NAME ARCH INIT BUDGET_S WORKERS BATCH LR MIX RECIPE_JSON [CONFIG_JSON]
    # two at once on one H200, data from scripts/make_device_media.py in devgpu/media:
    python scripts/device_train.py tiv tivtok2 models/tivtok.safetensors 480 7 32 3e-4 0.35,0.45,0.2 '{"slope": 3, "ssim_weight": 1}'

That machine (this project's lent H200) has PyTorch and OpenCV but no PyAV or zstandard, and
cannot install packages; PyAV's wheel (35 MB) does not fit its 64-MiB transfer beside the media.
Training needs neither except to decode the media, so this wrapper stubs both modules out and
decodes with OpenCV (colour conversion can differ from PyAV's by a level or so). It is not part
of the package, and a machine with PyAV needs none of it: the same run is `vtcodec train --model
ARCH --init INIT --part codec --data DIR --batch BATCH --lr LR --mix MIX --workers WORKERS
--recipe RECIPE [--config CONFIG] --seed 70 --steps N`, with N the step count the calibration chose (the run's
log.jsonl has it; the warm-up is the default 100 steps for any N >= 1000).

Steps are sized to a wall-clock budget: a 30-step calibration run measures the time per step,
and the run gets 92 % of the budget left. The EMA checkpoint is exported float16 into $OUT
(scripts/export_checkpoint.py) every 40 s, so a run cut short still returns weights.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

STUBBED = set()
for mod, subs in (("av", ("av.video", "av.video.reformatter", "av.error", "av.logging")), ("zstandard", ())):
    if importlib.util.find_spec(mod) is None or os.environ.get("STUB_" + mod.upper()):
        STUBBED.add(mod)
        for n in (mod, *subs):
            sys.modules[n] = mock.MagicMock()
sys.path.insert(0, "src")
if os.environ.get("CV2_PATH"):
    sys.path.append(os.environ["CV2_PATH"])
import numpy as np  # noqa: E402
import torch  # noqa: E402

import vtcodec.train.data as D  # noqa: E402
import vtcodec.train.loop as L  # noqa: E402


def read_frames(p):
    import cv2

    cap, frames = cv2.VideoCapture(str(p)), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    return np.stack(frames)


def read_image(p):
    import cv2

    return cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


if "av" in STUBBED:  # decode the media with OpenCV instead
    D.read_frames, D.read_image = read_frames, read_image
_cache = {}


def load_sources(root, split, min_side=128):
    if (str(root), split) not in _cache:
        t = time.time()
        _cache[str(root), split] = D.load_sources(root, split, min_side)
        s = _cache[str(root), split]
        print(f"[{split}] {len(s.videos)} videos {[v.shape for v in s.videos]}, {len(s.photos)} photos, {time.time() - t:.1f} s", flush=True)
    return _cache[str(root), split]


L.load_sources = load_sources


def exporter(src: Path, dst: Path, stop: threading.Event):
    last = None
    while True:
        done = stop.wait(40)
        if src.exists() and src.stat().st_mtime != last:
            last = src.stat().st_mtime
            tmp = Path(tempfile.mkdtemp()) / dst.name
            r = subprocess.run([sys.executable, __file__, "export", str(src), str(tmp)], check=False, capture_output=True)
            if r.returncode == 0 and tmp.exists():
                shutil.copyfile(tmp, dst)
                print(f"exported {dst} ({dst.stat().st_size} B) at {time.strftime('%H:%M:%S')}", flush=True)
        if done:
            return


def train_convtok(init: str, budget: str, workers: str, batch: str, lr: str):
    """vtcodec.train.convtok sized to the budget (its own calibration), weights exported as it goes
    (a run cut short still returns its last validation's weights)."""
    from vtcodec.train import convtok

    out = Path(os.environ.get("OUT", "/tmp/out"))
    out.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="run_convtok_"))
    try:
        convtok.main([os.environ.get("DATA", "devgpu/media"), str(run), "--init", init, "--budget-s", budget,
                      "--workers", workers, "--batch", batch, "--lr", lr, "--warmup", "50", "--val-every", "100",
                      "--export", str(out / "convtok.safetensors"), "--device", os.environ.get("DEV", "auto")])
    finally:
        if (run / "log.jsonl").exists():
            (out / "convtok.log.jsonl").write_bytes((run / "log.jsonl").read_bytes())


def main():
    if sys.argv[1] == "export":
        sys.argv = ["export_checkpoint.py", *sys.argv[2:]]
        import runpy
        runpy.run_path("scripts/export_checkpoint.py", run_name="__main__")
        return
    if sys.argv[1] == "convtok":
        return train_convtok(*sys.argv[2:8])
    name, arch, init, budget, workers, batch, lr, mix, recipe = sys.argv[1:10]
    budget, workers, batch, lr = float(budget), int(workers), int(batch), float(lr)
    mix = D.parse_mix(mix)
    recipe = json.loads(recipe)
    config = json.loads(sys.argv[10]) if len(sys.argv) > 10 else {}  # e.g. '{"ref_path": 4}'
    out = Path(os.environ.get("OUT", "/tmp/out"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    common = dict(model=arch, data=os.environ.get("DATA", "devgpu/media"), init=init, part="codec", batch=batch, lr=lr, mix=mix,
                  workers=workers, recipe=recipe, config=config, seed=70, device=os.environ.get("DEV", "auto"))
    cal = Path(tempfile.mkdtemp(prefix=f"cal_{name}_"))  # fresh each call: a warm machine keeps /tmp
    n_cal = int(os.environ.get("N_CAL", 30))
    L.train(L.TrainOptions(out=str(cal), steps=n_cal, val_every=10**6, save_every=10**6, **common))
    log = [json.loads(x) for x in (cal / "log.jsonl").read_text().splitlines()]
    k = n_cal // 3
    per_step = (log[-1]["elapsed_s"] - log[k - 1]["elapsed_s"]) / (n_cal - k)
    left = budget - (time.time() - t0)
    steps = max(20, int(left / per_step * 0.92))  # validation, saves, worker start
    print(f"calibration: {per_step * 1000:.1f} ms/step ({batch / per_step:.0f} clips/s, data_frac {log[-1]['data_frac']:.2f}); "
          f"{left:.0f} s left -> {steps} steps", flush=True)
    run = Path(tempfile.mkdtemp(prefix=f"run_{name}_"))
    stop = threading.Event()
    th = threading.Thread(target=exporter, args=(run / "model.safetensors", out / f"{name}.safetensors", stop))
    th.start()
    try:
        L.train(L.TrainOptions(out=str(run), steps=steps, val_every=max(1, steps // 5), save_every=max(10, steps // 10),
                               warmup=min(100, steps // 10), **common))
    finally:
        stop.set()
        th.join()
        if (run / "log.jsonl").exists():
            (out / f"{name}.log.jsonl").write_bytes((run / "log.jsonl").read_bytes())
    print(f"{name}: done in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
