"""`vtcodec train`: AdamW + warm-up/cosine, gradient clipping, EMA weights, bf16 autocast, DDP.

Outputs in `--out`: `model.safetensors` (EMA weights: the releasable checkpoint, same format as
models/), `resume.safetensors` + `resume.json` (raw weights, optimizer moments, step, RNG: kept
apart from the release, and pickle-free like everything else), `log.jsonl`, `preview.png`.
Multi-process: run under `torchrun`; gloo on CPU, nccl on CUDA; rank 0 writes files.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from vtcodec.atomic import replace_atomically
from vtcodec.bench.clipset import ClipSet, summary, videos_at
from vtcodec.codec import resolve_device
from vtcodec.errors import OutputError, VtcodecError, whole_number_problem
from vtcodec.models.registry import build, save_checkpoint, sha256_file, warm_start
from vtcodec.train.data import DEFAULT_MIX, ClipSampler, ClipStream, fixed_set, load_sources
from vtcodec.train.losses import psnr
from vtcodec.train.preview import preview
from vtcodec.train.steps import CLIP_FRAMES, PARTS, STEPS, in_part, knobs, part_patterns
from vtcodec.video import VIDEO_EXT


MAX_BAD_STEPS = 20  # consecutive steps with non-finite gradients before training stops


@dataclass
class TrainOptions:
    model: str
    data: str
    out: str
    steps: int = 1000
    batch: int = 8
    lr: float = 6e-4
    warmup: int = 100
    weight_decay: float = 0.05
    clip_grad: float = 1.0
    ema: float = 0.999
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"        # auto: bf16 on CUDA and on CPUs with AMX, else fp32
    compile: bool = False
    resume: bool = False
    val_every: int = 250
    val_clips: int = 16
    save_every: int = 250
    config: dict = field(default_factory=dict)
    init: str | None = None  # start from this checkpoint's weights
    recipe: dict = field(default_factory=dict)  # overrides of the step function's knobs (train.steps.RECIPES)
    part: str | None = None  # train only this submodule (train.steps.PARTS), the rest frozen
    # also validate through the real codec on this folder's videos (bench.clipset, as rd_sweep.py):
    # the internal validation (128-px clips) did not rank codec checkpoints in rounds 9-10
    val_codec: str | None = None
    # shares of the three clip kinds (videos, photographs in motion, hard cases): train.data.DEFAULT_MIX
    mix: tuple[float, float, float] = DEFAULT_MIX
    workers: int = 0  # sampling processes (0: in the trainer's own thread; a GPU needs several)

    def problem(self) -> str | None:
        """Why these options cannot start a run (one line), or None: checked before anything is
        built or written, so a refused run leaves nothing behind."""
        for name in ("steps", "batch", "val_every", "save_every", "val_clips"):
            if problem := whole_number_problem(f"--{name.replace('_', '-')}", getattr(self, name)):
                return problem
        for name, value in (("warmup", self.warmup), ("--workers", self.workers), ("--seed", self.seed)):
            if problem := whole_number_problem(name, value, minimum=0):
                return problem
        if problem := _mix_problem(self.mix):
            return problem
        if not (math.isfinite(self.lr) and self.lr > 0):
            return f"--lr must be a finite number > 0, got {self.lr!r}"
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0 and math.isfinite(self.clip_grad)
                and self.clip_grad > 0 and 0 <= self.ema < 1):
            return "weight_decay >= 0, clip_grad > 0 and ema in [0, 1) are required"
        if self.amp not in AMP_MODES:
            return f"--amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}"
        if not Path(self.data).is_dir():
            return f"--data {self.data}: not a folder (give a folder of videos and images)"
        if self.val_codec is not None and not videos_at(self.val_codec):  # every rank checks
            return f"--val-codec {self.val_codec}: no videos there ({', '.join(sorted(VIDEO_EXT))})"
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            return f"--out {self.out}: exists and is not a folder"
        run_files = [n for n in RUN_FILES if (out / n).exists()]
        if run_files and not self.resume:
            return (f"--out {self.out} already holds a run ({', '.join(run_files)}): pass --resume to continue it, "
                    "or choose another --out")
        return None


def _mix_problem(mix) -> str | None:
    why = f"--mix must be three finite shares >= 0 (videos, photographs, hard cases) with a finite sum > 0, got {mix!r}"
    if not isinstance(mix, (tuple, list)) or len(mix) != 3:
        return why
    try:
        shares = [float(x) for x in mix if not isinstance(x, bool) and isinstance(x, (int, float))]
    except OverflowError:  # an int too large for a float
        return why
    if len(shares) != 3 or not all(math.isfinite(x) and x >= 0 for x in shares) or not (0 < sum(shares) < math.inf):
        return why
    return None


AMP_MODES = ("auto", "bf16", "fp32")
FRESH_TOTALS = {"skipped": 0, "wall_s": 0.0}  # a run's running counts at its start (_save_resume)
# what a run has saved into --out (a log alone, from a run stopped before its first save, is no run)
RUN_FILES = ("model.safetensors", "resume.safetensors")


def _amp_dtype(opt: TrainOptions, device: torch.device):
    if opt.amp == "fp32":
        return None
    if opt.amp == "bf16" or device.type == "cuda":
        return torch.bfloat16
    try:  # CPU: bf16 only pays off with native bf16 matrix units (AMX)
        return torch.bfloat16 if "amx_bf16" in Path("/proc/cpuinfo").read_text() else None
    except OSError:
        return None


def lr_at(step: int, opt: TrainOptions) -> float:
    if step < opt.warmup:
        return opt.lr * (step + 1) / opt.warmup
    p = (step - opt.warmup) / max(1, opt.steps - opt.warmup)
    return opt.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def _save_resume(out: Path, model, optim, ema, step: int, g: torch.Generator, sampler: ClipSampler,
                 recipe: dict, totals: dict, mix: tuple) -> None:
    """`totals`: the run's running counts over all its sessions (skipped steps, wall seconds), so
    a resumed run's log and checkpoint count from the start of the run, not of the session."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}
    sd = optim.state_dict()
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"optim.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.gen"] = g.get_state()
    replace_atomically(out / "resume.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    meta = {"step": step, "param_groups": sd["param_groups"], "sampler": sampler.g.bit_generator.state, "recipe": recipe,
            "totals": totals, "mix": list(mix)}
    (out / "resume.json").write_text(json.dumps(meta))


def _load_resume(out: Path, model, optim, ema, g: torch.Generator, sampler: ClipSampler,
                 recipe: dict, defaults: dict, mix: tuple) -> tuple[int, dict]:
    """-> (the step to continue from, the run's totals so far; zeros for state saved before they were kept).
    A knob added after the run was saved counts as having had its default (`defaults`)."""
    if not (out / "resume.safetensors").is_file():
        raise VtcodecError(f"--resume: no resume state in {out}")
    t = load_file(str(out / "resume.safetensors"))
    meta = json.loads((out / "resume.json").read_text())
    saved = meta.get("recipe")  # None: state saved before recipes were recorded, no check
    if saved is not None and defaults | saved != recipe:
        raise VtcodecError(f"--resume: the run used recipe {meta['recipe']}, not {recipe}; pass the same --recipe")
    saved_mix = [float(x) for x in meta.get("mix", DEFAULT_MIX)]  # runs saved before --mix had the default
    if saved_mix != [float(x) for x in mix]:
        raise VtcodecError(f"--resume: the run used --mix {','.join(f'{x:g}' for x in saved_mix)}; pass the same --mix")
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")}, strict=True)
    ema.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("ema.")}, strict=True)
    state: dict = {}
    for k, v in t.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    optim.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(t["rng.torch"])
    g.set_state(t["rng.gen"])
    sampler.g.bit_generator.state = meta["sampler"]
    return int(meta["step"]), FRESH_TOTALS | meta.get("totals", {})


@torch.no_grad()
def validate(model, step_fn, val: torch.Tensor, device, amp, g, batch: int = 4, part: str | None = None) -> dict:
    model.eval()
    recons, targets, logs_all = [], [], []
    for i in range(0, len(val), batch):
        clip = val[i:i + batch].to(device)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            _, recon, target, logs = step_fn(model, clip, g, val=True)
        recons.append(recon.float().cpu())
        targets.append(target.float().cpu())
        logs_all.append(logs)
    model.train()
    recon, target = torch.cat(recons), torch.cat(targets)
    streams = model.tokens_per_chunk(key=True)
    levels = model.stream_levels
    stream = model.PART_STREAMS.get(part, part)
    bits = sum(n * math.log2(math.prod(levels[s])) for s, n in streams.items() if stream in (None, s) or stream not in streams)
    px = target.shape[2] * target.shape[3] * target.shape[4]
    # the step's own figures (ssim; the encoder part's mse_db and soft_bits, ...), averaged over batches
    means = {k: float(np.mean([lg[k] for lg in logs_all])) for k in logs_all[0]}
    return {"psnr": psnr(recon, target), **means, "bpp_raw_tokens": bits / px, "_recon": recon, "_target": target}


def train(opt: TrainOptions, progress: Callable[[dict], None] | None = None) -> Path:
    """Train; returns the path of the EMA checkpoint."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    why = opt.problem()  # every rank checks before the process group forms, so none writes first
    if why:
        raise VtcodecError(why)
    device = resolve_device(opt.device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    else:
        rank, world = 0, 1
    out = Path(opt.out)
    torch.manual_seed(opt.seed + rank)
    g = torch.Generator().manual_seed(opt.seed + rank)
    arch = opt.model
    fresh: list[str] = []
    if opt.init:
        model, fresh = warm_start(opt.init, opt.config, arch)  # its own arch, or one it lists in WARM_FROM
    else:
        model = build(arch, opt.config)
    if opt.part is None:
        if arch not in STEPS:
            raise VtcodecError(f"no training recipe for {arch!r}")
        base_fn = STEPS[arch]
    else:
        if (arch, opt.part) not in PARTS:
            have = ", ".join(f"{p} ({a})" for a, p in PARTS) or "none"
            raise VtcodecError(f"--part {opt.part}: {arch} has no separately trainable part of that name (parts: {have})")
        if distributed:
            raise VtcodecError("--part trains in one process; run it without torchrun")
        if not opt.init:
            raise VtcodecError("--part trains one part of a trained model: give that model with --init")
        if opt.compile:
            raise VtcodecError("--part calls the part directly, which --compile would not compile; drop one of them")
        patterns = part_patterns(model, opt.part)
        if not any(in_part(n, patterns) for n, _ in model.named_parameters()):  # e.g. post without post_width
            raise VtcodecError(f"--part {opt.part}: {arch} with this config has no parameters of that part")
        outside = [n for n in fresh if not in_part(n, patterns)]
        if outside:  # they would stay frozen at their random start
            raise VtcodecError(f"--part {opt.part}: --config starts {', '.join(outside[:3])} fresh outside the part; "
                               "train the whole model for that")
        base_fn = PARTS[arch, opt.part]
    defaults = knobs(base_fn)
    unknown = sorted(set(opt.recipe) - set(defaults))
    if unknown:
        who = f"{arch} --part {opt.part}" if opt.part else arch
        raise VtcodecError(f"--recipe: {who} has no knob {', '.join(unknown)} (it has: {', '.join(defaults) or 'none'})")
    bad = [k for k, v in opt.recipe.items() if isinstance(v, bool) or not isinstance(v, (int, float))
           or not (0 <= v <= 1 if k.endswith("_p") else 0 <= v < math.inf)]
    if bad:
        raise VtcodecError(f"--recipe: {', '.join(bad)} must be a number in [0, 1] (a share, *_p) or a finite number >= 0")
    values = defaults | opt.recipe
    step_fn = functools.partial(base_fn, **values)
    recipe = values | ({"part": opt.part} if opt.part else {})  # recorded, and checked on --resume
    model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    amp = _amp_dtype(opt, device)

    train_src = load_sources(opt.data, "train")
    if not train_src.videos and not train_src.photos:
        raise VtcodecError(f"--data {opt.data}: no videos or images found")
    val_src = load_sources(opt.data, "val")
    if not val_src.videos and not val_src.photos:
        val_src = train_src  # tiny data (e.g. the bundled example): validate on what there is
    mix = tuple(float(x) for x in opt.mix)
    sampler = ClipSampler(train_src, CLIP_FRAMES, model.tile, seed=opt.seed + 1000 * rank, mix=mix)
    val = fixed_set(val_src, opt.val_clips, CLIP_FRAMES, model.tile)
    codec_val = ClipSet(opt.val_codec) if opt.val_codec and rank == 0 else None  # 32 frames, 256x256

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if opt.part is not None and not in_part(n, patterns):
            p.requires_grad_(False)  # frozen: stays as loaded, in the EMA checkpoint too
            continue
        (no_decay if p.ndim < 2 else decay).append(p)
    # EMA pairs of the trained parameters only: frozen ones are equal in both and stay so
    ema_pairs = [(pe, pm) for pe, pm in zip(ema.parameters(), model.parameters()) if pm.requires_grad]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": opt.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=opt.lr, betas=(0.9, 0.95))
    start, before = (_load_resume(out, model, optim, ema, g, sampler, recipe, defaults, mix) if opt.resume
                     else (0, FRESH_TOTALS))
    batches = None
    if opt.workers:  # the workers' clip streams are seeded from (seed, rank, start step): a resume draws new clips
        stream = ClipStream(train_src, CLIP_FRAMES, model.tile, opt.batch, key=(opt.seed, rank, start), mix=mix)
        # 2 batches ahead per worker: a batch of 32 clips of 32x128x128 is 200 MB of shared memory
        batches = iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=opt.workers, prefetch_factor=2,
                                                   pin_memory=device.type == "cuda", persistent_workers=True))
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    if opt.compile:
        net = torch.compile(net)

    log = None
    if rank == 0:
        try:
            out.mkdir(parents=True, exist_ok=True)
            log = open(out / "log.jsonl", "a")
        except OSError as e:
            raise OutputError(f"--out {out}: cannot write the run there ({e.strerror or e})") from None
    t0, seen, data_time, skipped, bad_run = time.perf_counter(), 0, 0.0, before["skipped"], 0
    info = {"arch": arch, "init": str(opt.init) if opt.init else None,
            "init_sha256": sha256_file(opt.init) if opt.init else None,  # the path may later hold another file
            "fresh_from_init": fresh, "steps": opt.steps, "batch": opt.batch, "world": world, "data": str(opt.data),
            "device": str(device), "amp": str(amp), "seed": opt.seed, "recipe": recipe, "mix": list(mix), "workers": opt.workers}
    for step in range(start, opt.steps):
        for group in optim.param_groups:
            group["lr"] = lr_at(step, opt)
        td = time.perf_counter()
        clip = (next(batches) if batches is not None else sampler.batch(opt.batch)).to(device, non_blocking=True)
        data_time += time.perf_counter() - td
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss, _, _, logs = step_fn(net, clip, g)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(decay + no_decay, opt.clip_grad)
        if torch.isfinite(gn):  # (under DDP every rank sees the same reduced gradients)
            bad_run = 0
            optim.step()
            d = min(opt.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in ema_pairs:
                    pe.lerp_(pm, 1 - d)
        else:  # one bad batch must not poison the weights: skip it, and stop if it keeps happening
            skipped, bad_run = skipped + 1, bad_run + 1
            if bad_run >= MAX_BAD_STEPS:
                raise VtcodecError(f"training diverged: {bad_run} steps in a row with non-finite gradients "
                                   f"(step {step + 1}); lower --lr or use --amp fp32")
        seen += opt.batch * world
        rec = {"step": step + 1, "loss": loss.item(), "lr": lr_at(step, opt), "grad_norm": gn.item(), "skipped": skipped, **logs,
               "clips_per_s": seen / (time.perf_counter() - t0), "data_frac": data_time / (time.perf_counter() - t0),
               "elapsed_s": time.perf_counter() - t0}
        last = step + 1 == opt.steps
        if rank == 0 and ((step + 1) % opt.val_every == 0 or last):
            tv = time.perf_counter()
            v = validate(ema, step_fn, val, device, amp, g, part=opt.part)
            if codec_val:  # rank 0 only: under DDP the others wait at the next step's collective
                codec = summary(list(codec_val.scores(ema.eval())))
                v |= {f"codec_{k}": codec[k] for k in ("bpp", "psnr", "ssim")}
            preview(out / "preview.png", v.pop("_target"), v.pop("_recon"))
            rec |= {f"val_{k}": x for k, x in v.items()} | {"val_time_s": time.perf_counter() - tv}
        if rank == 0:
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if progress:
                progress(rec)
            if (step + 1) % opt.save_every == 0 or last:
                wall = before["wall_s"] + time.perf_counter() - t0
                info_now = info | {"step": step + 1, "wall_s": round(wall, 1),
                                   **{k: rec[k] for k in rec if k.startswith("val_")}}
                save_checkpoint(ema, out / "model.safetensors", info_now)
                _save_resume(out, model, optim, ema, step + 1, g, sampler, recipe, {"skipped": skipped, "wall_s": wall}, mix)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if log:
        log.close()
    if codec_val:
        codec_val.close()
    return out / "model.safetensors"
