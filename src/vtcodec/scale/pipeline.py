"""`vtcodec tokenize`: a whole dataset to token shards, on Ray Data.

The pipeline, all Ray Data operators:

    from_items(inputs)              one row per input file not yet fully written
    flat_map(cut_clips)             CPU tasks: probe, and with --clip-frames/--size decode and cut
                                    the clips (each sent on as a lossless .mkv, so the encoder reads
                                    exactly these frames); a file that fails becomes an error row
    map_batches(ClipEncoder)        an actor pool, one loaded model per actor (GPU actors with
                                    --gpus-per-worker): `codec.encode_file` per clip, the very
                                    function `vtcodec encode` runs, then its .vtk as a shard row
    write_parquet(OUT/.staging)     Ray writes files under a hidden folder ...

... and the driver commits each finished file: its clips become OUT/shard-<name>.parquet
(written to a temporary name and renamed), its error rows lines of OUT/errors.jsonl. A run that
is killed leaves at most unfinished files in .staging, which the next run commits when they read
back whole and deletes otherwise; that run then skips every (source, clip_start) already in a
shard, so each clip lands exactly once. Committing is idempotent (a staging file always becomes
the same shard name), so a kill between the rename and the delete costs nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from vtcodec.atomic import replace_atomically
from vtcodec.errors import VtcodecError, whole_number_problem
from vtcodec.scale import shards
from vtcodec.scale.inputs import expand_sources

STAGING = ".staging"
ERRORS = "errors.jsonl"


@dataclass
class TokenizeSummary:
    out: Path
    clips: int        # clips written by this run
    frames: int
    tokens: int
    bytes: int        # .vtk bytes
    failures: int     # rows of errors.jsonl after this run
    skipped: int      # inputs an earlier run had already written in full
    seconds: float

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (f"{self.out}: {self.clips} clips, {self.frames} frames, {self.tokens} tokens, {self.bytes} bytes, "
                f"{self.clips_per_s:.2f} clips/s, {self.failures} failures ({self.skipped} inputs already done)")


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'WxH' -> (W, H); None stays None."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise VtcodecError(f"--size must be WIDTHxHEIGHT, e.g. 256x256, got {text!r}") from None
    if w < 16 or h < 16:
        raise VtcodecError(f"--size {text!r}: each side must be at least 16 pixels")
    return w, h


def tokenize(sources: list, out: str | os.PathLike, *, model: str | os.PathLike = "tivtok",
             clip_frames: int | None = None, size: tuple[int, int] | None = None, segment_chunks: int = 8,
             refresh_db: float | None = 1.0, overlap: int = 0, workers: int | None = None,
             gpus_per_worker: float = 0.0, threads: int = 1, address: str | None = None,
             num_cpus: int | None = None, shard_clips: int = 64) -> TokenizeSummary:
    """Tokenize every clip of `sources` (files, folders, globs, manifests) into token shards in `out`.

    clip_frames: cut each file into clips of this many frames (None: one clip per file).
    size: (W, H): scale each clip to cover this size and crop its centre (None: as it is).
    segment_chunks, refresh_db, overlap: as for `encode_file`.
    workers: model actors (None: one per CPU, or per `gpus_per_worker` GPUs); threads: torch
    threads in each. address: an existing Ray cluster ('auto', 'ray://host:10001', 'host:6379');
    None starts Ray in this process with `num_cpus` (None: all of this machine's).
    shard_clips: clips per shard file (the last ones fewer); a killed run redoes at most the
    shards it had not finished.
    """
    t0 = time.perf_counter()
    if clip_frames is not None and (problem := whole_number_problem("--clip-frames", clip_frames)):
        raise VtcodecError(problem)
    for name, value in (("--workers", workers), ("--threads", threads), ("--shard-clips", shard_clips)):
        if value is not None and (problem := whole_number_problem(name, value)):
            raise VtcodecError(problem)
    from vtcodec.models.registry import resolve_model

    ckpt = str(resolve_model(model).resolve())  # actors load by path: no $VTCODEC_MODELS needed there
    inputs = expand_sources(sources)
    if not inputs:
        raise VtcodecError("no input videos found in the sources given")
    out = Path(out)
    try:
        (out / STAGING).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VtcodecError(f"--out {os.fspath(out)!r}: cannot create the folder ({e.strerror or e})") from None
    totals = _commit_staged(out)  # what a killed run left
    done, counts = shards.done_clips(out)
    have: dict[str, list[int]] = {}
    for s, c in sorted(done):
        have.setdefault(s, []).append(c)
    todo = [{"source": src, "skip": have.get(src, [])} for src in inputs
            if src not in counts or len(have[src]) < counts[src]]
    if todo:
        options = dict(segment_chunks=segment_chunks, refresh_db=refresh_db, overlap=overlap)
        _run(todo, out, ckpt, options, clip_frames, size, workers, gpus_per_worker, threads, address, num_cpus,
             shard_clips)
        for k, v in _commit_staged(out).items():
            totals[k] += v
    failures = _tidy_errors(out, shards.done_clips(out)[0])
    return TokenizeSummary(out, totals["clips"], totals["frames"], totals["tokens"], totals["bytes"], failures,
                           len(inputs) - len(todo), time.perf_counter() - t0)


def _ray():
    try:
        import ray
    except ImportError:
        raise VtcodecError('vtcodec tokenize needs Ray: pip install "vtcodec[scale]"') from None
    return ray


def _run(todo, out, ckpt, options, clip_frames, size, workers, gpus_per_worker, threads, address, num_cpus,
         shard_clips) -> None:
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        kw = {"address": address} if address else {"num_cpus": num_cpus}
        for attempt in (1, 2):
            try:
                ray.init(**kw, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
                break
            except Exception as e:  # Ray gives a local raylet 30 s to register: a loaded machine can miss that once
                ray.shutdown()
                if address and isinstance(e, ConnectionError):
                    raise VtcodecError(f"--address {address}: {e} (a cluster with token authentication also "
                                       "needs its RAY_AUTH_TOKEN here)") from None
                if address or attempt == 2 or "timed out during startup" not in str(e):
                    raise
    try:
        if workers is None:
            res = ray.cluster_resources()
            workers = int(res.get("GPU", 0) // gpus_per_worker) if gpus_per_worker else int(res.get("CPU", 1) // threads)
            if clip_frames is None and size is None:  # one clip per input: no more actors than inputs
                workers = min(workers, len(todo))
            workers = max(1, workers)
        ds = ray.data.from_items(todo, override_num_blocks=min(len(todo), 1024))  # a block: inputs one task cuts
        # Cutting and writing are light next to the model on CPU machines: 0 CPUs, so they never
        # wait behind actors that hold every core; with GPU actors the CPUs are free for them
        ds = ds.flat_map(cut_clips, fn_kwargs={"clip_frames": clip_frames, "size": size},
                         num_cpus=1 if gpus_per_worker else 0, compute=ray.data.TaskPoolStrategy(size=workers))
        ds = ds.map_batches(ClipEncoder, fn_constructor_kwargs={"ckpt": ckpt, "options": options, "threads": threads},
                            batch_size=1, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers),
                            num_cpus=threads if not gpus_per_worker else 1, num_gpus=gpus_per_worker or None)
        ds.write_parquet(str((out / STAGING).resolve()), min_rows_per_file=shard_clips, compression="zstd",
                         ray_remote_args={"num_cpus": 1 if gpus_per_worker else 0})
    finally:
        if started:
            ray.shutdown()


def cut_clips(item: dict, clip_frames: int | None, size: tuple[int, int] | None) -> list[dict]:
    """An input file -> its clip rows (a CPU task). Whole files as they are travel by path; cut or
    resized clips as lossless .mkv bytes. A file that cannot be read -> one error row."""
    from vtcodec.video import probe, read_chunks

    src, skip = item["source"], set(item["skip"])
    row = {"source": src, "clip_start": 0, "clips_in_source": 1, "clip": b"", "error": ""}
    try:
        info = probe(src)
        if clip_frames is None and size is None:
            return [row]
        n = clip_frames or info.frame_count
        count = -(-info.frame_count // n)
        rows = []
        for i, frames in enumerate(read_chunks(src, n, info=info)):
            if i * n in skip:
                continue
            if size is not None:
                frames = fit(frames, size)
            rows.append(row | {"clip_start": i * n, "clips_in_source": count, "clip": lossless_mkv(frames, info.fps)})
        return rows
    except Exception as e:  # a bad input never stops the run: it becomes a line of errors.jsonl
        return [row | {"error": _reason(e)}]


def _reason(e: BaseException) -> str:
    return str(e) if isinstance(e, VtcodecError) else f"{type(e).__name__}: {e}"


def fit(frames, size: tuple[int, int]):
    """Scale uint8 (T, H, W, 3) frames to cover `size` (W, H), keeping their aspect, and crop the centre."""
    import av
    import numpy as np

    w, h = size
    t, fh, fw, _ = frames.shape
    s = max(w / fw, h / fh)
    rw, rh = max(w, round(fw * s)), max(h, round(fh * s))
    x, y = (rw - w) // 2, (rh - h) // 2
    out = np.empty((t, h, w, 3), np.uint8)
    for i, f in enumerate(frames):
        scaled = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(width=rw, height=rh, format="rgb24",
                                                                      interpolation="AREA")
        out[i] = scaled.to_ndarray()[y:y + h, x:x + w]
    return out


def lossless_mkv(frames, fps: Fraction) -> bytes:
    """Frames as a lossless (libx264rgb, qp 0) .mkv: the encoder reads back exactly these frames."""
    from vtcodec.video import VideoWriter

    with tempfile.TemporaryDirectory(prefix="vtcodec-clip-") as d:
        path = Path(d) / "clip.mkv"
        with VideoWriter(path, frames.shape[2], frames.shape[1], fps, lossless=True) as w:
            w.write(frames)
        return path.read_bytes()


class ClipEncoder:
    """A Ray Data actor: one loaded model, each clip through `codec.encode_file` into a shard row."""

    def __init__(self, ckpt: str, options: dict, threads: int):
        import torch

        from vtcodec.codec import load_tokenizer

        torch.set_num_threads(threads)
        self.tok = load_tokenizer(ckpt)
        self.options = options

    def __call__(self, batch):
        import pyarrow as pa

        return pa.Table.from_pylist([self.encode(r) for r in batch.to_pylist()], schema=shards.schema(with_error=True))

    def encode(self, r: dict) -> dict:
        meta = {k: r[k] for k in ("source", "clip_start", "clips_in_source")}
        if r["error"]:
            return meta | {"error": r["error"]}
        from vtcodec.codec import encode_file

        try:
            with tempfile.TemporaryDirectory(prefix="vtcodec-tokenize-") as d:
                src = r["source"]
                if r["clip"]:
                    src = Path(d) / "clip.mkv"
                    src.write_bytes(r["clip"])
                vtk = Path(d) / "clip.vtk"
                encode_file(src, vtk, model=self.tok, **self.options)
                return shards.clip_row(vtk, meta) | {"error": None}
        except Exception as e:
            return meta | {"error": _reason(e)}


def _commit_staged(out: Path) -> dict[str, int]:
    """Turn every whole file in OUT/.staging into a shard (+ lines of errors.jsonl); delete the
    rest (half-written by a killed run). Returns what the committed shards hold."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    totals = dict(clips=0, frames=0, tokens=0, bytes=0)
    for f in sorted((out / STAGING).glob("*.parquet")):
        try:
            t = pq.read_table(f)
        except Exception:  # not whole: its clips were never committed, so the next run redoes them
            f.unlink()
            continue
        bad = pc.fill_null(pc.not_equal(t["error"], ""), False)
        errors, good = t.filter(bad), t.filter(pc.invert(bad)).drop_columns(["error"])
        if good.num_rows:
            replace_atomically(out / f"shard-{f.stem}.parquet",
                               lambda tmp: pq.write_table(good.cast(shards.schema()), tmp, compression="zstd"))
            totals["clips"] += good.num_rows
            totals["frames"] += pc.sum(good["frames"]).as_py() or 0
            totals["tokens"] += len(pc.list_flatten(pc.list_flatten(good["tokens"])))
            totals["bytes"] += pc.sum(pc.binary_length(good["vtk"])).as_py() or 0
        if errors.num_rows:
            with open(out / ERRORS, "a") as e:
                for row in errors.select(["source", "clip_start", "error"]).to_pylist():
                    e.write(shards.error_line(row) + "\n")
        f.unlink()
    return totals


def _tidy_errors(out: Path, written: set[tuple[str, int]]) -> int:
    """Rewrite errors.jsonl with one line per failing input that is still not written (a later
    run may have succeeded, or retried it); returns its line count."""
    path = out / ERRORS
    if not path.exists():
        return 0
    latest = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if (rec.get("source"), rec.get("clip_start")) not in written:
            latest[(rec.get("source"), rec.get("clip_start"))] = rec
    replace_atomically(path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in latest.values())))
    return len(latest)
