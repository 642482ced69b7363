"""The tokens of a `.vtk` file as integer arrays, without the model: for training on them.

People training video generation models want the discrete tokens, not pixels: `read_tokens`
walks a file's chunks and yields each one's token streams (name -> int64 array, one row per
tile) with the FSQ levels that give them meaning; `export_npz` writes them all to one `.npz`.
Neither loads a checkpoint or imports torch. `vtcodec.codec.iter_decode` reads chunks through
the same `chunks_of`, so what a user reads is exactly what the decoder decodes.

What a chunk holds (docs/FORMAT.md): a key chunk restarts every tile and carries the model's key
streams (RefTok `intra`, TivTok `tiv`: both archs) for all of them; a following chunk carries only the
continuing streams, except in a partial refresh, where `refreshed` lists the restarted tiles and
the key streams hold one row per listed tile, in that order.

Each row is one tile's tokens in the model's order; `TokenChunk.shaped(name)` lays them out as
(rows, T, H, W) with the grid the encoder recorded in the header (`stream_grids`: latent time,
rows, columns for the baseline's latents and RefTok's targets; 1 x rows x columns for RefTok's
intra frame; as RefTok's intra and target for TivTok's (arch `tivtok2`) TIV and TV tokens; frames
x 1 x slots for the TV tokens of TivTok's first design (arch `tivtok`), patches x 1 x slots for its
TIV tokens). Files written before the header recorded grids have none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vtcodec.container import REFRESH_TILES, SEGMENT, SHARED, TOKENS, VtkReader, check_chunk_units
from vtcodec.errors import FormatError, OutputError, VtcodecError
from vtcodec.entropy import grid_problem
from vtcodec.limits import unit_token_limit
from vtcodec.packing import MAX_ELEMENTS, SegmentCoder


@dataclass(frozen=True)
class TokenChunk:
    chunk: int
    first_frame: int
    n_frames: int
    key: bool                        # starts a segment: every tile restarts
    streams: dict[str, np.ndarray]   # stream -> int64 (rows, tokens); rows = tiles (see `refreshed`)
    levels: dict[str, list[int]]     # stream -> FSQ levels: an index's digits, fastest-varying first
    refreshed: np.ndarray | None     # non-key chunk: tiles restarted here (rows of the key streams)
    shared: frozenset[str] = frozenset()  # streams that came in the chunk's SHARED unit
    grids: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # stream -> (T, H, W), from the header

    def shaped(self, name: str) -> np.ndarray:
        """Stream `name` as (rows, T, H, W), laid out by the grid the encoder recorded. KeyError if
        the chunk has no such stream; VtcodecError if the file records no grid for it."""
        if name not in self.streams:
            raise KeyError(f"chunk {self.chunk} has no stream {name!r} (it has {sorted(self.streams)})")
        if name not in self.grids:
            raise VtcodecError(f"no grid recorded for stream {name!r}: the file was written before "
                               f"vtcodec recorded stream_grids in the header")
        return self.streams[name].reshape(-1, *self.grids[name])


def read_tokens(src: str | os.PathLike, *, start: int = 0, stop: int | None = None) -> Iterator[TokenChunk]:
    """Yield the chunks needed for frames [start, stop): from the key chunk at or before `start`."""
    with VtkReader(src) as r:
        yield from chunks_of(r, start, stop)


def chunks_of(r: VtkReader, start: int, stop: int | None) -> Iterator[TokenChunk]:
    """`read_tokens` on a reader that stays open while this is consumed (the decoder's way in).
    Each chunk's unit sequence is checked as its units are read; the last chunk's is checked as
    complete when the generator is exhausted."""
    entries = {e.chunk: e for e in r.index}
    grids = _header_grids(r.header)
    cur, kinds, parts = None, [], []
    for unit, streams in unit_streams(r, start, stop, grids):
        if unit.chunk != cur:
            check_chunk_units(kinds, cur, r.version, complete=True)
            cur, kinds, parts = unit.chunk, [], []
        kinds.append(unit.type)
        check_chunk_units(kinds, cur, r.version)
        if streams is not None:
            parts.append(streams)
        if unit.type == TOKENS:
            yield _chunk(entries[cur], kinds[0] == SEGMENT, parts, grids)
    check_chunk_units(kinds, cur, r.version, complete=True)


def unit_streams(r: VtkReader, start: int = 0, stop: int | None = None, grids: dict | None = None):
    """Each unit from the key chunk at or before `start`, with its payload's streams (name ->
    (int64 indices, levels)) for SHARED and TOKENS units and None for the others. Version-3
    payloads decode with their segment's state, so units come in file order from a SEGMENT."""
    grids = _header_grids(r.header) if grids is None else grids
    limit = _unit_limit(r.header, grids)
    coder = SegmentCoder(r.header.get("stream_levels", {}), grids)  # levels validated by VtkReader (limits)
    for unit in r.units(start, stop):
        if unit.type == SEGMENT:
            coder.start()
        yield unit, (coder.unpack(unit.payload, max_elements=limit) if unit.type in (SHARED, TOKENS) else None)


def _header_grids(header: dict) -> dict[str, tuple[int, int, int]]:
    """The header's optional `stream_grids` (absent in files from earlier writers); FormatError if
    it is not {stream: [T, H, W]} with positive ints."""
    raw = header.get("stream_grids", {})
    if not isinstance(raw, dict) or any(grid_problem(g) for g in raw.values()):
        raise FormatError(f"invalid .vtk header: stream_grids {raw!r} is not {{stream: [T, H, W]}}")
    return {k: tuple(g) for k, g in raw.items()}


def _unit_limit(header: dict, grids: dict) -> int:
    """The most tokens one unit can hold by the header: every stream for every tile, plus a
    partial refresh's tile list. Checked before a payload is decoded, so a forged unit of a few
    bytes cannot make the reader decode millions of range-coded digits. Files without grids
    are bounded by their frame size (vtcodec.limits.unit_token_limit)."""
    return unit_token_limit(header, MAX_ELEMENTS)  # header validated by VtkReader (vtcodec.limits)


def _chunk(entry, key: bool, parts: list[dict], grids: dict | None = None) -> TokenChunk:
    """`parts`: the unpacked payloads of the chunk's SHARED unit (if any) and TOKENS unit."""
    shared, tokens = (parts[0], parts[1]) if len(parts) == 2 else ({}, parts[0])
    if set(shared) & set(tokens):
        raise FormatError(f"chunk {entry.chunk}: streams {sorted(set(shared) & set(tokens))} appear twice")
    if REFRESH_TILES in tokens or (key and REFRESH_TILES in shared):
        raise FormatError(f"chunk {entry.chunk}: {REFRESH_TILES!r} outside a partial refresh's SHARED unit")
    streams = {k: v for part in parts for k, (v, _) in part.items()}
    levels = {k: lv for part in parts for k, (_, lv) in part.items()}
    refreshed = None
    if not key and shared:  # SHARED + TOKENS in a following chunk: a partial refresh
        refreshed = streams.pop(REFRESH_TILES, None)
        levels.pop(REFRESH_TILES, None)
        rows = {len(arr) for k, (arr, _) in shared.items() if k != REFRESH_TILES}
        if refreshed is None or refreshed.ndim != 1 or not len(refreshed) or (np.diff(refreshed) <= 0).any() \
                or refreshed[0] < 0 or not rows <= {len(refreshed)}:
            raise FormatError(f"chunk {entry.chunk}: partial refresh without a valid ascending {REFRESH_TILES!r} "
                              "stream matching its key streams' rows")
    grids = grids or {}
    for k, v in streams.items():
        if k in grids and (v.ndim != 2 or grid_problem(grids[k], v.shape[1])):
            raise FormatError(f"chunk {entry.chunk}: stream {k!r} of shape {v.shape} does not fit its grid {grids[k]}")
    return TokenChunk(entry.chunk, entry.first_frame, entry.n_frames, key, streams, levels, refreshed,
                      frozenset(shared) - {REFRESH_TILES}, {k: g for k, g in grids.items() if k in streams})


def export_npz(src: str | os.PathLike, dst: str | os.PathLike, *, force: bool = False) -> dict:
    """Write every chunk's token streams to `dst` (.npz), atomically; returns a summary.

    Arrays: `c{chunk:05d}/tokens/{stream}` int (rows, tokens) in the smallest unsigned dtype that holds
    the stream's codebook, `c{chunk:05d}/refreshed` for partial refreshes, `chunks` (n, 4) int64
    rows (chunk, first_frame, n_frames, key), and `header` (the .vtk header, whose `stream_grids`
    give each stream's (T, H, W) layout where the file records it, and each stream's levels, JSON).
    """
    from vtcodec.atomic import replace_atomically
    from vtcodec.video import check_file_output  # PyAV: only the export needs it

    dst = Path(dst)
    if dst.suffix != ".npz":
        raise OutputError(f"output {os.fspath(dst)!r}: token export writes a .npz file")
    check_file_output(src, dst, force, "a .npz file")
    if not dst.parent.is_dir():
        raise OutputError(f"output folder {os.fspath(dst.parent)!r} does not exist")
    arrays: dict[str, np.ndarray] = {}
    rows, levels, tokens = [], {}, 0
    with VtkReader(src) as r:
        header = dict(r.header)
        for c in chunks_of(r, 0, None):
            rows.append((c.chunk, c.first_frame, c.n_frames, int(c.key)))
            for name, v in c.streams.items():
                arrays[f"c{c.chunk:05d}/tokens/{name}"] = v.astype(_index_dtype(c.levels[name]))
                tokens += v.size
            if c.refreshed is not None:
                arrays[f"c{c.chunk:05d}/refreshed"] = c.refreshed
            levels |= c.levels
    arrays["chunks"] = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    arrays["header"] = np.asarray(json.dumps({"vtk": header, "levels": levels}))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    replace_atomically(dst, write)
    return {"path": str(dst), "chunks": len(rows), "tokens": tokens, "streams": sorted(levels)}


def _index_dtype(levels: list[int]):
    n = int(np.prod(levels, dtype=np.int64))
    return next(dt for dt in (np.uint8, np.uint16, np.uint32, np.int64) if n <= np.iinfo(dt).max + 1)
