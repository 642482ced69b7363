"""The ``vtcodec bench`` command: benchmark tokenizer models against x264, x265 and AV1.

Lives beside ``cli.py``, which registers it with ``app.command()(bench)``. All measuring is
``vtcodec.bench.runner.run_bench``; this module only parses options, shows progress and
renders the results (rich), and writes the JSON and plot files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vtcodec.errors import OutputError, VideoError

RATIO_HELP = (
    "Pixels per token: pick the installed models that spend one token per N input pixels, "
    "e.g. 1024 = one token per 4 frames x 16 x 16 pixels. Default: every installed model."
)


def _check_result_path(path: Path, flag: str, sources: list[Path]) -> None:
    """OutputError unless `path` can take a results file: its folder exists, and it is not a
    folder, a special file or one of the input videos (an existing results file is replaced)."""
    if path.is_dir() or not path.parent.is_dir():
        raise OutputError(f"{flag} {path}: give a file path in an existing folder")
    if path.exists() and not path.is_file():
        raise OutputError(f"{flag} {path}: exists and is not a regular file")
    from vtcodec.bench.runner import expand_data

    inputs = [f for p in expand_data(sources) for f in (sorted(p.glob("*.png")) if p.is_dir() else [p])]
    if path.exists() and any(f.exists() and path.samefile(f) for f in inputs):
        raise OutputError(f"{flag} {path} is one of the input videos; choose another path")


def _default_data() -> list[Path]:
    """The bundled examples/*.mp4, next to the source tree's package or in the working directory."""
    roots = [Path(__file__).resolve().parents[2] / "examples", Path.cwd() / "examples"]
    for root in roots:
        found = sorted(root.glob("*.mp4")) if root.is_dir() else []
        if found:
            return found
    raise VideoError(
        "no --data given and no examples/*.mp4 found in the repository or the current directory"
    )


def _num(v, fmt: str, dash: str = "–") -> str:
    if v is None:
        return dash
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, fmt)


def _row(label, bpp, m: dict, enc, dec, peak) -> list[str]:
    return [
        label,
        bpp,
        _num(m.get("psnr_rgb"), ".2f"),
        _num(m.get("psnr_y"), ".2f"),
        _num(m.get("ssim"), ".4f"),
        _num(m.get("ms_ssim"), ".4f"),
        _num(m.get("vmaf"), ".2f"),
        _num(enc, ".1f"),
        _num(dec, ".1f"),
        peak,
    ]


def _table(results: dict) -> Table:
    s = results["summary"]
    n = s["videos"]
    title = (
        f"vtcodec bench: {n} video{'s' if n != 1 else ''}, {s['frames']} frames, "
        f"device {results['settings']['device']}"
        + (" (means over videos)" if n > 1 else "")
    )
    t = Table(title=title)
    for col, just in [
        ("codec", "left"), ("bpp", "right"), ("PSNR", "right"), ("PSNR-Y", "right"),
        ("SSIM", "right"), ("MS-SSIM", "right"), ("VMAF", "right"), ("enc fps", "right"),
        ("dec fps", "right"), ("peak MB", "right"),
    ]:
        t.add_column(col, justify=just)
    for key, m in s["models"].items():
        peak = _num(m["peak_rss_mb"], ".0f")
        if m.get("peak_gpu_mb"):
            peak += f" (GPU {m['peak_gpu_mb']:.0f})"
        label = f"[bold]{key}[/bold]"
        if m.get("pixels_per_token"):
            label += f" ({m['pixels_per_token']:.0f} px/tok, {m['compression_ratio']:.0f}:1)"
        t.add_row(*_row(label, _num(m["bpp"], ".4f"), m, m["encode_fps"], m["decode_fps"], peak))
        for codec, c in s["matched"].get(key, {}).items():
            if c["bracketed"]:
                mark = "" if c["exact"] else "~"
                t.add_row(*_row(f"  {codec} @ same bpp{mark}", _num(c["target_bpp"], ".4f"), c,
                                c["encode_fps"], c["decode_fps"], "–"))
            else:
                near = {k: c["nearest_" + k] for k in ("psnr_rgb", "psnr_y", "ssim", "ms_ssim", "vmaf")}
                t.add_row(*_row(f"  {codec} nearest†", _num(c["nearest_bpp"], ".4f"), near,
                                c["encode_fps"], c["decode_fps"], "–"), style="dim")
    return t


def _footer(results: dict, console: Console) -> None:
    s = results["summary"]
    vm = results["settings"]["vmaf"]
    notes = []
    if not vm["available"]:
        notes.append(vm["reason"])
    refine = results["settings"].get("refine") or {}
    if refine.get("steps"):
        notes.append(f"models encoded with --refine {refine['steps']} --refine-slope {refine['slope']:g} "
                     "(encoder-side search; classical encoders at their presets).")
    notes.append(
        "PSNR = RGB, pooled MSE; PSNR-Y/SSIM/MS-SSIM on BT.601 luma, per frame then mean; "
        "classical bytes = elementary stream, model bytes = .vtk file."
    )
    matched = [c for per in s["matched"].values() for c in per.values()]
    if any(c["bracketed"] and not c["exact"] for c in matched):
        notes.append("~ interpolated between CRFs whose bpp are both >10 % from the target.")
    if any(not c["bracketed"] for c in matched):
        notes.append("† target bpp outside the encoder's CRF range; the nearest encode is shown.")
    for key, per in s["matched"].items():
        bpp = s["models"][key]["bpp"]
        for codec, c in per.items():
            eq = c.get("bpp_at_equal_psnr_rgb")
            if eq:
                notes.append(
                    f"{codec} reaches {key}'s PSNR at {eq:.4f} bpp: {key} uses "
                    f"{100 * (bpp / eq - 1):+.1f} % bits."
                )
    for codec, bd in s["bd_rate_vs_x264"].items():
        parts = [f"{mk}: {_num(v, '+.1f')} %" for mk, v in bd.items()]
        notes.append(f"BD-rate {codec} vs x264 ({', '.join(parts)}); negative = fewer bits.")
    for n in notes:
        console.print(f"[dim]{n}[/dim]")


def _paper_table(paper: dict) -> Table:
    t = Table(title="Paper claims vs measured")
    for col in ("claim", "models", "claimed", "measured", "note"):
        t.add_column(col)
    for r in paper["reftok_vs_baseline"]:
        t.add_row(
            "RefTok vs baseline, equal tokens",
            f"{r['reftok']} vs {r['baseline'] or '–'}",
            f"+{r['claimed_percent']} % (PSNR/SSIM/LPIPS)",
            _num(r.get("measured_percent"), "+.1f") + " % (PSNR/SSIM/MS-SSIM)",
            r.get("reason", ""),
        )
    for r in paper["tivtok_vs_baseline"]:
        t.add_row(
            "TivTok vs baseline, tokens/128 frames at equal PSNR",
            r["tivtok"],
            f"{r['claimed_ratio']}x fewer",
            _num(r.get("measured_ratio"), ".2f") + "x fewer",
            "" if r.get("equal_psnr") else r.get("reason", "not at equal PSNR"),
        )
    return t


def bench(
    ratio: Annotated[int | None, typer.Option("--ratio", help=RATIO_HELP, min=1)] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Video file or folder of videos (repeatable). Default: examples/*.mp4."),
    ] = None,
    frames: Annotated[
        int | None,
        typer.Option("--frames", min=1, help="Use the first N frames of each video. Default: all (paper suite: 128)."),
    ] = None,
    size: Annotated[
        str | None,
        typer.Option("--size", help="Center-crop and resize every video to WxH, e.g. 256x256, for all codecs."),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every raw number to this JSON file.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write an RD plot PNG (needs vtcodec\\[plot]).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    suite: Annotated[
        str, typer.Option("--suite", help="default, or paper: also compare with the papers' claims.")
    ] = "default",
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Only this installed model (repeatable). Default: every model at --ratio."),
    ] = None,
    refine: Annotated[
        int, typer.Option("--refine", min=0, help="Encoder-side refinement steps for every model (see `vtcodec encode --refine`).")
    ] = 0,
    refine_slope: Annotated[
        float, typer.Option("--refine-slope", min=0, help="With --refine: dB per doubling of bits (see `vtcodec encode`).")
    ] = 0.0,
) -> None:
    """Benchmark tokenizer models against x264, x265 and AV1 at the same bits per pixel."""
    from vtcodec.bench.prepare import parse_size
    from vtcodec.bench.runner import run_bench

    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise typer.BadParameter(f"{device!r} is not auto, cpu or cuda", param_hint="--device")
    if suite not in ("default", "paper"):
        raise typer.BadParameter(f"{suite!r} is not default or paper", param_hint="--suite")
    wh = parse_size(size) if size else None
    if suite == "paper" and frames is None:
        frames = 128
    if plot is not None:
        from vtcodec.bench.plot import require_matplotlib

        require_matplotlib()  # fail before the long run, not after it
    sources = data or _default_data()
    for path, flag in ((json_path, "--json"), (plot, "--plot")):  # likewise the output paths
        if path is not None:
            _check_result_path(path, flag, sources)
    err = Console(stderr=True)
    with err.status("starting benchmark") as status:
        results = run_bench(
            sources, ratio, frames, wh, device, progress=lambda msg: status.update(msg),
            suite=suite, refine=refine, refine_slope=refine_slope, model_keys=model,
        )
    console = Console(width=max(160, Console().width))  # the table must not wrap when piped or logged
    console.print(_table(results))
    _footer(results, console)
    if suite == "paper":
        console.print(_paper_table(results["paper"]))
    if json_path is not None:
        from vtcodec.bench.jsonio import write_results

        write_results(results, json_path)
        console.print(f"results: {json_path}")
    if plot is not None:
        from vtcodec.bench.plot import plot_rd

        plot_rd(results, plot)
        console.print(f"plot: {plot}")
