"""The `vtcodec` command line: a thin Typer layer over the library.

Each command parses options and calls one library function. Library errors (`VtcodecError`) are
caught in `main` and printed as one line with exit status 1; heavy imports (torch) happen inside
commands so `vtcodec --help` answers at once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from vtcodec.errors import VtcodecError, VtcodecWarning, interrupt

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="A video codec built on neural video tokenizers.")


@app.callback()
def _root() -> None:
    """A video codec built on neural video tokenizers: encode, decode, info, models, bench, train, edit."""


@app.command()
def train(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="architecture: convtok (the shipped tivtok, reftok and vidtok: one network, "
                                            "three modes) | tivtok2 | reftok | vidtok | tivtok (earlier designs, kept "
                                            "for their checkpoints)")],
    data: Annotated[Path, typer.Option(help="folder of training videos and images (any layout)")],
    out: Annotated[Path, typer.Option(help="run folder: model.safetensors, log.jsonl, preview.png, resume state")],
    steps: Annotated[int, typer.Option()] = 1000,
    batch: Annotated[int, typer.Option()] = 8,
    lr: Annotated[float, typer.Option()] = 6e-4,
    config: Annotated[Optional[str], typer.Option(help='JSON config overrides, e.g. \'{"spatial_down": 8}\'')] = None,
    resume: Annotated[bool, typer.Option(help="continue from the resume state in --out")] = False,
    init: Annotated[Optional[Path], typer.Option(help="start from this checkpoint's weights; with --config, tensors that still fit are copied and new ones start fresh")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    amp: Annotated[str, typer.Option(help="auto | bf16 | fp32 (auto: bf16 on CUDA/AMX CPUs)")] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    val_every: Annotated[int, typer.Option()] = 250,
    save_every: Annotated[int, typer.Option()] = 250,
    compile: Annotated[bool, typer.Option(help="torch.compile the model")] = False,
    recipe: Annotated[Optional[str], typer.Option(help='JSON training-recipe overrides, e.g. \'{"reuse_p": 0.8}\' (knobs: vtcodec.train.steps.RECIPES)')] = None,
    part: Annotated[Optional[str], typer.Option(help="train only this part, the rest frozen (encoder: what only the encoder uses, any model; reftok, tivtok2: intra, and post (the detail pass, with --config post_width); codec: everything, on the codec's chunk loop); use with --init")] = None,
    val_codec: Annotated[Optional[Path], typer.Option(help="also validate through the codec: each video of this folder (32 frames, 256x256), real .vtk bits, PSNR, SSIM")] = None,
    mix: Annotated[Optional[str], typer.Option(help="shares of video clips, photographs in motion and synthetic hard cases, e.g. 0.3,0.5,0.2 [default: vtcodec.train.data.DEFAULT_MIX, 0.45,0.35,0.2]")] = None,
    workers: Annotated[int, typer.Option(help="processes cutting clips (0: the trainer's own thread; a GPU needs several)")] = 0,
) -> None:
    """Train a tokenizer on your own footage; the EMA checkpoint lands in OUT/model.safetensors
    (convtok: the best validation in OUT/best.safetensors)."""
    if model == "convtok":
        _train_convtok(ctx)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from vtcodec.train.data import DEFAULT_MIX, parse_mix
    from vtcodec.train.loop import TrainOptions, train as run

    overrides, recipe_overrides = _json_option("--config", config), _json_option("--recipe", recipe)
    opt = TrainOptions(model=model, data=str(data), out=str(out), steps=steps, batch=batch, lr=lr,
                       config=overrides, resume=resume, init=str(init) if init else None, device=device,
                       amp=amp, seed=seed, val_every=val_every, save_every=save_every, compile=compile,
                       recipe=recipe_overrides, part=part, val_codec=str(val_codec) if val_codec else None,
                       mix=DEFAULT_MIX if mix is None else parse_mix(mix), workers=workers)
    cols = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    bar = Progress(*cols, transient=False)
    task = None

    def report(rec: dict) -> None:
        nonlocal task
        if task is None:  # drawn at the first step: a run refused before it prints its one line alone
            bar.start()
            task = bar.add_task(f"train {model}", total=steps, info="")
        info = f"loss {rec['loss']:.4f}  {rec['clips_per_s']:.1f} clips/s"
        if "val_psnr" in rec:
            info += f"  val {rec['val_psnr']:.2f} dB"
        if "val_codec_bpp" in rec:
            info += f"  codec {rec['val_codec_bpp']:.5f} bpp {rec['val_codec_psnr']:.2f} dB"
        bar.update(task, completed=rec["step"], info=info)

    try:
        path = run(opt, progress=report)
    finally:
        if task is not None:
            bar.stop()
    typer.echo(f"checkpoint: {path}")


# `vtcodec train` options the ConvTok trainer (vtcodec.train.convtok) takes; unless given, its own defaults apply
_CONVTOK_OPTIONS = ("steps", "batch", "lr", "seed", "val_every", "device", "workers", "init", "config")


def _train_convtok(ctx: typer.Context) -> None:
    """`vtcodec train --model convtok`: the ConvTok trainer, which resumes a run folder by itself
    and keeps its best validation (OUT/best.safetensors). Options are passed on only when given."""
    from vtcodec.train import convtok

    opts = ctx.params
    given = [k for k in opts if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") != "DEFAULT"]  # typer's own click
    unused = [k for k in given if k not in (*_CONVTOK_OPTIONS, "model", "data", "out", "resume")]
    if unused:
        raise VtcodecError(f"--model convtok does not take {', '.join('--' + k.replace('_', '-') for k in unused)}")
    if (opts["out"] / "state.pt").exists() != opts["resume"]:
        raise VtcodecError(f"{opts['out']}: " + ("it holds a run; add --resume to continue it" if not opts["resume"]
                                                 else "no run to resume (state.pt)"))
    argv = [str(opts["data"]), str(opts["out"])]
    for k in (k for k in _CONVTOK_OPTIONS if k in given):
        value = json.dumps(_json_option("--config", opts[k])) if k == "config" else str(opts[k])
        argv += ["--" + k.replace("_", "-"), value]
    convtok.main(argv)
    typer.echo(f"checkpoint: {opts['out'] / 'best.safetensors'}")


def _json_option(name: str, text: str | None) -> dict:
    """A JSON-object option, or {} when absent; a user mistake is a one-line error."""
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise VtcodecError(f"{name} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise VtcodecError(f"{name} must be a JSON object, e.g. '{{\"key\": 1}}'")
    return value


def _progress(label: str):
    """A rich progress bar and the (done, total) callback that drives it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(f"[bold]{label}", BarColumn(), MofNCompleteColumn(), "frames", TimeRemainingColumn(), transient=True)
    task = bar.add_task(label, total=None)
    return bar, lambda done, total: bar.update(task, completed=done, total=total)


Device = Annotated[str, typer.Option(help="auto | cpu | cuda (auto: GPU when there is one)")]
Force = Annotated[bool, typer.Option("--force", "-f", help="overwrite an existing output")]


@app.command()
def encode(
    src: Annotated[Path, typer.Argument(help="input video (anything FFmpeg reads)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output .vtk file")],
    model: Annotated[str, typer.Option(help="checkpoint key (see `vtcodec models`) or .safetensors path")] = "tivtok",
    device: Device = "auto",
    force: Force = False,
    segment: Annotated[int, typer.Option(help="a key chunk (random-access point) at least every N chunks")] = 8,
    refresh_db: Annotated[float, typer.Option(help="restart a tile when that gains more than this many dB PSNR on "
                                                   "it over continuing; 'inf' disables (rate-distortion knob)")] = 1.0,
    overlap: Annotated[int, typer.Option(help="minimum tile overlap in pixels, blended at decode; 0 (default) butts "
                                              "tiles edge to edge and may show seams, 16 hides them at up to 2.25x "
                                              "the tokens (a 256x256 frame: 9 tiles instead of 4)")] = 0,
    tile_batch: Annotated[int, typer.Option(help="tiles per model call")] = 8,
    refine: Annotated[int, typer.Option(min=0, help="encoder-side search: N decoder passes per chunk looking for "
                                                    "tokens that decode closer to the input; slower encode, same "
                                                    "decoder and format (0: off)")] = 0,
    refine_slope: Annotated[float, typer.Option(min=0, help="with --refine: the dB of PSNR a token change must buy "
                                                          "per doubling of a tile's bits (0: quality only)")] = 0.0,
    quality: Annotated[Optional[int], typer.Option(min=0, help="rate step of models that offer several from one "
                                                               "checkpoint: 0 (fewest bits) to 3; default 2")] = None,
) -> None:
    """Encode a video into tokens (.vtk)."""
    from vtcodec.codec import encode_file

    bar, cb = _progress("encode")
    with bar:
        r = encode_file(src, output, model=model, device=device, force=force, segment_chunks=segment,
                        refresh_db=refresh_db, overlap=overlap, tile_batch=tile_batch, refine=refine,
                        refine_slope=refine_slope, quality=quality, progress=cb)
    typer.echo(f"{r.path}: {r.frames} frames {r.width}x{r.height}, {r.chunks} chunks ({r.key_chunks} key, "
               f"{r.tile_refreshes} tiles refreshed), {r.tokens} tokens, {r.bytes} bytes, {r.bpp:.5f} bpp, {r.seconds:.1f} s ({r.model})")


@app.command()
def decode(
    src: Annotated[Path, typer.Argument(help="input .vtk file")],
    output: Annotated[str, typer.Option("--output", "-o", help="output video: .mp4/.mkv (H.264), .y4m, or dir/ for PNGs")],
    start: Annotated[int, typer.Option(help="first frame to decode")] = 0,
    stop: Annotated[Optional[int], typer.Option(help="frame to stop before (default: the end)")] = None,
    lossless: Annotated[bool, typer.Option(help="lossless H.264 (RGB) instead of high-quality lossy")] = False,
    device: Device = "auto",
    force: Force = False,
) -> None:
    """Decode a .vtk file back to a playable video (or a frame range of it)."""
    from vtcodec.codec import decode_file

    bar, cb = _progress("decode")
    with bar:
        r = decode_file(src, output, start=start, stop=stop,
                        device=device, force=force, lossless=lossless, progress=cb)
    typer.echo(f"{r.path}: {r.frames} frames {r.width}x{r.height}, {r.seconds:.1f} s")


@app.command()
def edit(
    src: Annotated[Path, typer.Argument(help="a .vtk made with a model of arch reftok or tivtok2 (the shipped reftok, tivtok)")],
    reference: Annotated[Path, typer.Option(help="edited reference frame (image); resized to the video")],
    output: Annotated[str, typer.Option("--output", "-o", help="output video (dir/ for PNG frames)")],
    device: Device = "auto",
    force: Force = False,
) -> None:
    """Zero-shot editing: decode a .vtk against an edited reference frame (RefTok) or TIV image (TivTok)."""
    from vtcodec.codec import decode_file

    bar, cb = _progress("edit")
    with bar:
        r = decode_file(src, output, reference=reference, device=device, force=force, progress=cb)
    typer.echo(f"{r.path}: {r.frames} frames decoded against {reference}")


@app.command()
def info(
    src: Annotated[Path, typer.Argument(help=".vtk file")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show a .vtk file's header, unit sizes, bits per token and the tokens' entropy."""
    from vtcodec.report import describe

    d = describe(src)
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    con = Console()
    h = d["header"]
    bpp = "no pixels" if d["bpp"] is None else f"{d['bpp']:.5f} bits per pixel"  # an empty video has none
    con.print(f"[bold]{d['path']}[/]  {d['file_bytes']} bytes, {bpp}")
    con.print(f"model {h['model']} ({h.get('arch')}) sha256 {h['checkpoint_sha256'][:16]}…  "
              f"{h['width']}x{h['height']} {h['frame_count']} frames @ {h['fps']} fps, "
              f"chunks of {h['chunk_frames']}: {d['chunks']} ({d['key_chunks']} key, {d['tile_refreshes']} tiles refreshed)")
    t = Table("unit", "count", "payload bytes", "largest")
    for k, u in d["units"].items():
        t.add_row(k, str(u["count"]), str(u["payload_bytes"]), str(u["max"]))
    con.print(t)
    s = Table("stream", "tokens", "distinct", "entropy bits/token", "packed as (units)")
    for k, v in d["streams"].items():
        s.add_row(k, str(v["tokens"]), str(v["distinct"]), f"{v['entropy_bits']:.2f}",
                  ", ".join(f"{lay} ({n})" for lay, n in sorted(v["layouts"].items())))
    con.print(s)
    if d["tokens"]:
        con.print(f"packed: {d['bits_per_token_packed']:.2f} bits/token (whole file {d['bits_per_token_file']:.2f}) "
                  f"vs empirical entropy {d['entropy_bits_per_token']:.2f} bits/token")
    text = json.dumps(h, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    con.print(f"container: {d['container_overhead_bytes']} of {d['file_bytes']} bytes outside the token payloads; "
              f"header stored in {d['header_bytes']} bytes ({len(text)} bytes of JSON)")
    con.print("header: " + json.dumps(h, sort_keys=True))


@app.command()
def tokens(
    src: Annotated[Path, typer.Argument(help="input .vtk file")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output .npz: every chunk's token streams")],
    force: Force = False,
) -> None:
    """Export a .vtk file's tokens as integer arrays (.npz) for training on them; no model needed."""
    from vtcodec.tokens import export_npz

    r = export_npz(src, output, force=force)
    typer.echo(f"{r['path']}: {r['chunks']} chunks, {r['tokens']} tokens, streams {', '.join(r['streams'])}")


@app.command()
def tokenize(
    src: Annotated[list[str], typer.Argument(help="videos, folders, globs, or manifests (.csv/.jsonl/.parquet with a 'path' column)")],
    out: Annotated[Path, typer.Option("--out", help="output folder: shard-*.parquet, errors.jsonl")],
    model: Annotated[str, typer.Option(help="checkpoint key (see `vtcodec models`) or .safetensors path")] = "tivtok",
    clip_frames: Annotated[Optional[int], typer.Option(help="cut videos into clips of N frames (default: whole files)")] = None,
    size: Annotated[Optional[str], typer.Option(help="WxH: scale each clip to cover it and crop the centre")] = None,
    segment: Annotated[int, typer.Option(help="as for `encode`")] = 8,
    refresh_db: Annotated[float, typer.Option(help="as for `encode` (rate-distortion knob)")] = 1.0,
    overlap: Annotated[int, typer.Option(help="as for `encode`")] = 0,
    workers: Annotated[Optional[int], typer.Option(help="model actors (default: one per CPU, or per --gpus-per-worker GPUs)")] = None,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per actor (0: CPU actors)")] = 0.0,
    threads: Annotated[int, typer.Option(help="torch threads (and CPUs) per CPU actor")] = 1,
    address: Annotated[Optional[str], typer.Option(help="an existing Ray cluster (e.g. auto, host:6379); default: Ray in this process")] = None,
    num_cpus: Annotated[Optional[int], typer.Option(help="CPUs for the local Ray (default: all)")] = None,
    shard_clips: Annotated[int, typer.Option(help="clips per shard file (a killed run redoes its unfinished shards)")] = 64,
) -> None:
    """Tokenize a whole dataset into Parquet shards on Ray Data (resumable; needs vtcodec[scale])."""
    from vtcodec.scale.pipeline import parse_size, tokenize as run

    s = run(src, out, model=model, clip_frames=clip_frames, size=parse_size(size), segment_chunks=segment,
            refresh_db=refresh_db, overlap=overlap, workers=workers, gpus_per_worker=gpus_per_worker,
            threads=threads, address=address, num_cpus=num_cpus, shard_clips=shard_clips)
    typer.echo(s.line())


@app.command()
def models() -> None:
    """List installed checkpoints ($VTCODEC_MODELS, then the shipped ones, then ./models)."""
    from rich.console import Console
    from rich.table import Table

    from vtcodec.checkpoint_index import list_checkpoints, model_dirs

    found = list_checkpoints()  # headers and a cache: no torch, no model built (unless a checkpoint is new)
    t = Table("key", "arch", "px/token", "params", "MB", "sha256", "path")
    for m in found:
        t.add_row(m.key, m.arch, str(m.pixels_per_token), f"{m.params / 1e6:.2f}M", f"{m.size_bytes / 1e6:.1f}",
                  m.sha256[:16] + "…", str(m.path))
    Console().print(t if found else f"no checkpoints in {[str(d) for d in model_dirs()]}")


@app.command()
def demo(
    model: Annotated[str, typer.Option(help="checkpoint key")] = "tivtok",
    src: Annotated[Optional[Path], typer.Option(help="input video (default: the bundled example)")] = None,
    out: Annotated[Path, typer.Option(help="folder for demo.vtk and demo_recon.mp4")] = Path("out"),
    device: Device = "auto",
) -> None:
    """The main job on the bundled example: encode -> .vtk -> decode, and a summary with PSNR."""
    from vtcodec.bench.metrics import psnr_rgb, ssim
    from vtcodec.codec import decode_file, encode_file
    from vtcodec.errors import OutputError
    from vtcodec.models.registry import resolve_model
    from vtcodec.video import check_output_path, probe, read_frames

    src = src or _bundled_example()
    probe(src)  # the inputs first: a refused demo leaves no folder behind
    resolve_model(model)
    vtk, mp4 = out / f"demo_{model}.vtk", out / f"demo_{model}_recon.mp4"
    check_output_path(src, mp4, True)  # the demo rewrites its outputs, never its input (encode_file checks the .vtk)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    bar, cb = _progress(f"encode {model}")
    with bar:
        e = encode_file(src, vtk, model=model, device=device, force=True, progress=cb)
    bar, cb = _progress("decode")
    with bar:
        d = decode_file(vtk, str(mp4), device=device, force=True, lossless=True, progress=cb)
    ref, rec = read_frames(src), read_frames(mp4)
    typer.echo(f"input   {src}: {e.frames} frames, {e.width}x{e.height}")
    typer.echo(f"encoded {vtk}: {e.tokens} tokens in {e.chunks} chunks ({e.key_chunks} key), {e.bytes} bytes, "
               f"{e.bpp:.5f} bits per pixel (24 bpp raw: {24 / e.bpp:.0f}x smaller), {e.seconds:.1f} s")
    typer.echo(f"decoded {mp4}: PSNR {psnr_rgb(ref, rec):.2f} dB, SSIM {ssim(ref, rec):.3f}, {d.seconds:.1f} s")


def _bundled_example() -> Path:
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        p = root / "examples" / "pan_astronaut.mp4"
        if p.is_file():
            return p
    raise VtcodecError("bundled example examples/pan_astronaut.mp4 not found; pass --src")


def _register_bench() -> None:
    from vtcodec.cli_bench import bench

    app.command()(bench)


_register_bench()


def main(argv: list[str] | None = None) -> None:
    """Entry point (console script, `python -m vtcodec`, and tests via argv). Exits with the status."""
    # SIGTERM (kill, timeout) unwinds like Ctrl-C, so half-written outputs are removed; both wait
    # while a temporary output is being created (errors.held_signals)
    # (not in torchrun's workers, whose agent stops them with SIGTERM and expects them gone)
    ours = threading.current_thread() is threading.main_thread() and not {"TORCHELASTIC_RUN_ID", "LOCAL_RANK"} & set(os.environ)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if ours else {}
    before = {s: h for s, h in before.items() if h is not None}  # None: set from C, cannot be restored
    try:
        for s, handler in ((signal.SIGINT, _interrupted), (signal.SIGTERM, _terminated)):
            if s in before:
                signal.signal(s, handler)
        with warnings.catch_warnings():  # restores showwarning on the way out
            warnings.showwarning = _show_warning
            app(args=argv, prog_name="vtcodec")  # standalone: Click prints usage errors itself
    except VtcodecError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    except Terminated:
        typer.echo("terminated", err=True)
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """vtcodec's own warnings (errors.VtcodecWarning) as one line, others as Python prints them."""
    if issubclass(category, VtcodecWarning):
        typer.echo(f"warning: {message}", err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class Terminated(BaseException):
    """SIGTERM, raised where the process is, so every cleanup that Ctrl-C runs runs too (a
    BaseException, as KeyboardInterrupt is; not one, which typer would turn into a silent exit)."""


def _terminated(signum, frame) -> None:
    interrupt(Terminated())


def _interrupted(signum, frame) -> None:
    interrupt(KeyboardInterrupt())
