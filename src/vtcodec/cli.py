"""The `vtcodec` command line: a thin Typer layer over the library.

Each command parses options and calls one library function. Library errors (`VtcodecError`) are
caught in `main` and printed as one line with exit status 1; heavy imports (torch) happen inside
commands so `vtcodec --help` answers at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from vtcodec.errors import VtcodecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="A video codec built on neural video tokenizers.")


@app.callback()
def _root() -> None:
    """A video codec built on neural video tokenizers: encode, decode, info, models, bench, train, edit."""


@app.command()
def train(
    model: Annotated[str, typer.Option(help="architecture: tivtok | reftok | vidtok")],
    data: Annotated[Path, typer.Option(help="folder of training videos and images (any layout)")],
    out: Annotated[Path, typer.Option(help="run folder: model.safetensors, log.jsonl, preview.png, resume state")],
    steps: Annotated[int, typer.Option()] = 1000,
    batch: Annotated[int, typer.Option()] = 8,
    lr: Annotated[float, typer.Option()] = 6e-4,
    config: Annotated[Optional[str], typer.Option(help='JSON config overrides, e.g. \'{"spatial_down": 8}\'')] = None,
    resume: Annotated[bool, typer.Option(help="continue from the resume state in --out")] = False,
    init: Annotated[Optional[Path], typer.Option(help="start from this checkpoint's weights")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    amp: Annotated[str, typer.Option(help="auto | bf16 | fp32 (auto: bf16 on CUDA/AMX CPUs)")] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    val_every: Annotated[int, typer.Option()] = 250,
    save_every: Annotated[int, typer.Option()] = 250,
    compile: Annotated[bool, typer.Option(help="torch.compile the model")] = False,
) -> None:
    """Train a tokenizer on your own footage; the EMA checkpoint lands in OUT/model.safetensors."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from vtcodec.train.loop import TrainOptions, train as run

    try:
        overrides = json.loads(config) if config else {}
    except json.JSONDecodeError as e:
        raise VtcodecError(f"--config is not valid JSON: {e}") from None
    opt = TrainOptions(model=model, data=str(data), out=str(out), steps=steps, batch=batch, lr=lr,
                       config=overrides, resume=resume, init=str(init) if init else None, device=device,
                       amp=amp, seed=seed, val_every=val_every, save_every=save_every, compile=compile)
    cols = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    with Progress(*cols, transient=False) as bar:
        task = bar.add_task(f"train {model}", total=steps, info="")

        def report(rec: dict) -> None:
            info = f"loss {rec['loss']:.4f}  {rec['clips_per_s']:.1f} clips/s"
            if "val_psnr" in rec:
                info += f"  val {rec['val_psnr']:.2f} dB"
            bar.update(task, completed=rec["step"], info=info)

        path = run(opt, progress=report)
    typer.echo(f"checkpoint: {path}")


def main(argv: list[str] | None = None) -> None:
    """Entry point (console script, `python -m vtcodec`, and tests via argv). Exits with the status."""
    try:
        app(args=argv, prog_name="vtcodec")  # standalone: Click prints usage errors itself
    except VtcodecError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
