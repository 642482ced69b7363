"""Token shards: the Parquet rows `vtcodec tokenize` writes, and the loader a training loop reads.

One row is one clip. Its tokens are exactly what `vtcodec encode` + `vtcodec tokens` give for that
clip: the row is built from the clip's `.vtk` file by `read_tokens` (vtcodec.tokens), and the
`.vtk` bytes travel in the row too, so any row decodes with `vtcodec decode`.

Columns (the same for every model, so shards of several models can sit side by side):

    source str, clip_start int64, frames int64, fps str ("30000/1001"), width, height int32,
    clips_in_source int32 (how many clips the source was cut into: what resuming counts),
    model str, checkpoint_sha256 str,
    streams list<str>                 the token streams, sorted; the lists below follow this order
    levels list<list<int32>>          each stream's FSQ levels (an index's digits, fastest first)
    grids list<list<int32>>           each stream's (T, H, W) per row ([] if the file records none)
    tokens list<list<int64>>          each stream's rows over all chunks, flattened
    token_rows list<list<int32>>      rows each chunk contributes to each stream (0: not in that chunk)
    chunks list<int64>                (n, 4) flattened: chunk, first_frame, n_frames, key
    refreshed list<int64>             a partial refresh's tile numbers, all chunks concatenated
    refreshed_rows list<int32>        how many of them each chunk has
    vtk binary                        the clip's .vtk file

This module needs pyarrow, not Ray: the loader runs wherever the training loop does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vtcodec.errors import VtcodecError
from vtcodec.tokens import TokenChunk

SHARD_GLOB = "shard-*.parquet"  # what the loader and resuming read; nothing else in the folder is a shard


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise VtcodecError('reading token shards needs pyarrow: pip install pyarrow (or "vtcodec[scale]")') from None
    return pa, pq


def schema(with_error: bool = False):
    """The shard schema; `with_error` adds the `error` column the pipeline carries until commit."""
    pa, _ = _pa()
    ints = pa.list_(pa.int32())
    fields = [
        ("source", pa.string()), ("clip_start", pa.int64()), ("frames", pa.int64()), ("fps", pa.string()),
        ("width", pa.int32()), ("height", pa.int32()), ("clips_in_source", pa.int32()),
        ("model", pa.string()), ("checkpoint_sha256", pa.string()),
        ("streams", pa.list_(pa.string())), ("levels", pa.list_(ints)), ("grids", pa.list_(ints)),
        ("tokens", pa.list_(pa.list_(pa.int64()))), ("token_rows", pa.list_(ints)),
        ("chunks", pa.list_(pa.int64())), ("refreshed", pa.list_(pa.int64())), ("refreshed_rows", ints),
        ("vtk", pa.large_binary()),
    ]
    if with_error:
        fields.append(("error", pa.string()))
    return pa.schema(fields)


def clip_row(vtk_path: str | os.PathLike, meta: dict) -> dict:
    """The shard row of the `.vtk` file at `vtk_path`; `meta` gives source, clip_start and
    clips_in_source (what the file cannot know)."""
    from vtcodec.container import VtkReader
    from vtcodec.tokens import chunks_of

    with VtkReader(vtk_path) as r:
        h = dict(r.header)
        chunks = list(chunks_of(r, 0, None))
    names = sorted({k for c in chunks for k in c.streams})
    levels = {k: lv for c in chunks for k, lv in c.levels.items()}
    grids = h.get("stream_grids", {})
    return {
        "source": meta["source"], "clip_start": int(meta["clip_start"]), "frames": int(h["frame_count"]),
        "fps": str(h["fps"]), "width": int(h["width"]), "height": int(h["height"]),
        "clips_in_source": int(meta["clips_in_source"]), "model": str(h["model"]),
        "checkpoint_sha256": str(h["checkpoint_sha256"]),
        "streams": names, "levels": [list(levels[k]) for k in names], "grids": [list(grids.get(k, [])) for k in names],
        "tokens": [np.concatenate([c.streams[k].ravel() for c in chunks if k in c.streams]).tolist() for k in names],
        "token_rows": [[len(c.streams[k]) if k in c.streams else 0 for c in chunks] for k in names],
        "chunks": [v for c in chunks for v in (c.chunk, c.first_frame, c.n_frames, int(c.key))],
        "refreshed": [int(t) for c in chunks if c.refreshed is not None for t in c.refreshed],
        "refreshed_rows": [0 if c.refreshed is None else len(c.refreshed) for c in chunks],
        "vtk": Path(vtk_path).read_bytes(),
    }


def row_chunks(row: dict) -> list[TokenChunk]:
    """A shard row (as `read_token_shards(..., rows=True)` yields it, or a pyarrow row dict) back
    into the `TokenChunk`s `vtcodec.read_tokens` gives for its `.vtk` file (all but `shared`, which
    says in which unit a stream travelled and is left empty)."""
    names = list(row["streams"])
    table = np.asarray(row["chunks"], dtype=np.int64).reshape(-1, 4)
    per_stream = {}
    for k, flat, rows, grid in zip(names, row["tokens"], row["token_rows"], row["grids"]):
        flat, rows = np.asarray(flat, dtype=np.int64), np.asarray(rows, dtype=np.int64)
        per_stream[k] = np.split(flat.reshape(int(rows.sum()), -1), np.cumsum(rows)[:-1])
    levels = {k: [int(v) for v in lv] for k, lv in zip(names, row["levels"])}
    grids = {k: tuple(int(v) for v in g) for k, g in zip(names, row["grids"]) if len(g)}
    refreshed = np.split(np.asarray(row["refreshed"], dtype=np.int64), np.cumsum(row["refreshed_rows"])[:-1])
    out = []
    for i, (chunk, first, n, key) in enumerate(table):
        streams = {k: per_stream[k][i] for k, rows in zip(names, row["token_rows"]) if rows[i]}
        out.append(TokenChunk(int(chunk), int(first), int(n), bool(key), streams, {k: levels[k] for k in streams},
                              refreshed[i] if row["refreshed_rows"][i] else None,
                              grids={k: g for k, g in grids.items() if k in streams}))
    return out


def shard_files(folder: str | os.PathLike) -> list[Path]:
    d = Path(folder)
    if not d.is_dir():
        raise VtcodecError(f"token shard folder {os.fspath(folder)!r} does not exist")
    return sorted(d.glob(SHARD_GLOB))


PER_STREAM = ("tokens", "token_rows", "levels", "grids")  # list columns that follow `streams`


def read_token_shards(folder: str | os.PathLike, *, batch_size: int = 64,
                      columns: list[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Yield the clips of `vtcodec tokenize`'s output folder as numpy batches of up to
    `batch_size` rows: scalar columns as 1-D arrays, `vtk` as an object array of bytes, `chunks`
    of (n, 4) arrays, and the per-stream columns as object arrays of {stream: array} dicts, one
    per clip: `tokens` int64 (rows, tokens per row), all the clip's chunks in order (`token_rows`
    says how many rows each chunk gave), `levels` and `grids`. `columns`: read only these (the
    per-stream ones bring `streams` along). Needs pyarrow, not Ray."""
    _, pq = _pa()
    if columns is not None and set(columns) & set(PER_STREAM):
        columns = list(dict.fromkeys([*columns, "streams", *(["token_rows"] if "tokens" in columns else [])]))
    for path in shard_files(folder):
        for rb in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns):
            yield _numpy_batch(rb.to_pydict())


def _numpy_batch(cols: dict[str, list]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, values in cols.items():
        if name == "tokens":
            out[name] = _objects([
                {k: np.asarray(flat, dtype=np.int64).reshape(sum(rows), -1) for k, flat, rows in zip(names, toks, trows)}
                for names, toks, trows in zip(cols["streams"], values, cols["token_rows"])])
        elif name in PER_STREAM:
            out[name] = _objects([{k: np.asarray(v, dtype=np.int64) for k, v in zip(names, per)}
                                  for names, per in zip(cols["streams"], values)])
        elif name == "chunks":
            out[name] = _objects([np.asarray(v, dtype=np.int64).reshape(-1, 4) for v in values])
        elif name in ("streams", "vtk", "refreshed", "refreshed_rows"):
            out[name] = _objects([v if isinstance(v, bytes) else np.asarray(v) for v in values])
        else:
            out[name] = np.asarray(values)
    return out


def _objects(items: list) -> np.ndarray:
    a = np.empty(len(items), dtype=object)  # not np.array(items): equal-length lists would become 2-D
    a[:] = items
    return a


def done_clips(folder: Path) -> tuple[set[tuple[str, int]], dict[str, int]]:
    """What earlier runs wrote: the (source, clip_start) pairs and each source's clip count."""
    _, pq = _pa()
    pairs, counts = set(), {}
    for path in shard_files(folder):
        t = pq.read_table(path, columns=["source", "clip_start", "clips_in_source"]).to_pydict()
        for s, c, n in zip(t["source"], t["clip_start"], t["clips_in_source"]):
            pairs.add((s, c))
            counts[s] = n
    return pairs, counts


def error_line(row: dict) -> str:
    return json.dumps({"source": row["source"], "clip_start": row["clip_start"], "error": row["error"]})
