"""The codec: video file <-> tokenizer <-> token packing <-> .vtk container.

Encode: stream chunks of `chunk_frames` frames from the video, tile each chunk, run the tiles
through the tokenizer in batches, pack the token streams and write them as units. Each chunk
either continues the current segment (the model's state carries over: TivTok reuses TIV tokens,
RefTok references the last decoded frame) or starts a new one (a key chunk, a random-access
point). A new segment starts every `segment_chunks` chunks. In between, the encoder codes each
chunk both ways and restarts every *tile* where restarting beats continuing by more than
`refresh_db` dB on that tile -- the rate-distortion knob: a refresh costs the tile's key-stream
bits, so it pays only where the quality it buys is large (motion, a cut, drift), and static tiles
keep reusing. When every tile wants it the chunk becomes a key chunk; otherwise the restarted
tiles' key streams travel in a SHARED unit of the non-key chunk, with their tile numbers in the
`refresh_tiles` stream (format version 2, docs/FORMAT.md).

Decode mirrors it; a time range decodes from the last key chunk at or before its start.
The codec never special-cases a model: everything it needs comes from the Tokenizer surface
(models/base.py) and the .vtk header.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from vtcodec import __version__
from vtcodec.container import REFRESH_TILES, SEGMENT, SHARED, TOKENS, VtkReader, VtkWriter
from vtcodec.errors import FormatError, ModelError, OutputError, VtcodecError, whole_number_problem
from vtcodec.models.base import Streams, Tokenizer
from vtcodec.models.registry import find_by_sha, load_checkpoint, resolve_model, sha256_file
from vtcodec.packing import SegmentCoder, pack_streams
from vtcodec.refine import DEFAULT_LR, check_settings, refine_latents
from vtcodec.tiling import TileLayout, frames_to_video, tile_mse, video_to_frames
from vtcodec.tokens import TokenChunk, chunks_of
from vtcodec.video import (IMAGE_EXT, VIDEO_EXT, VideoWriter, check_file_output, check_output_path, probe, read_chunks,
                           read_image)

Progress = Callable[[int, int], None]  # (frames done, frames total)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise VtcodecError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VtcodecError("--device cuda: no CUDA device is available")
    return torch.device(device)


def load_tokenizer(model: str | Path = "tivtok", device: str = "auto") -> Tokenizer:
    """Load an installed checkpoint by key (`tivtok`, `reftok`, `vidtok`, `vidtok-256`) or path.

    The returned model carries `.key` and `.sha256` (what .vtk headers record) and sits on the
    requested device in eval mode.
    """
    path = resolve_model(model)
    return _load(path, device, path.stem, sha256_file(path))


def _load(path: Path, device: str, key: str, sha256: str) -> Tokenizer:
    """A checkpoint ready for coding: on its device, named as .vtk headers name it."""
    tok = load_checkpoint(path, resolve_device(device))
    tok.key, tok.sha256 = key, sha256
    if tok.CHANNELS_LAST:  # convolutional models: oneDNN's faster layout on CPU, same results (to 2e-7)
        tok.to(memory_format=torch.channels_last)
    return tok


def _autocast(device: torch.device):
    # half precision on GPU; fp32 on CPU (bf16 is slower than fp32 on CPUs without bf16 units)
    return torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda")


def _key_streams(model: Tokenizer) -> set[str]:
    return set(model.tokens_per_chunk(True)) - set(model.tokens_per_chunk(False))


def _check_streams(model: Tokenizer, streams: dict, n_tiles: int, key: bool, chunk: int) -> None:
    want = model.tokens_per_chunk(key)
    if set(streams) != set(want):
        raise FormatError(f"chunk {chunk}: streams {sorted(streams)} do not match {model.key} (expects {sorted(want)})")
    for name, arr in streams.items():
        if arr.shape != (n_tiles, want[name]):
            raise FormatError(f"chunk {chunk}: stream {name!r} has shape {arr.shape}, expected {(n_tiles, want[name])}")


@dataclass
class EncodeResult:
    path: Path
    model: str
    frames: int
    width: int
    height: int
    chunks: int
    key_chunks: int
    tile_refreshes: int  # tiles restarted inside non-key chunks (partial refreshes)
    tokens: int
    bytes: int
    bpp: float
    seconds: float

    def summary(self) -> dict[str, Any]:
        return self.__dict__ | {"path": str(self.path)}


@dataclass
class DecodeResult:
    path: Path | None
    frames: int
    width: int
    height: int
    seconds: float


class _Batches:
    """Tiles of a chunk in fixed-size batches, each with its own (encoder, decoder) model state."""

    def __init__(self, n_tiles: int, batch: int):
        self.slices = [slice(i, min(i + batch, n_tiles)) for i in range(0, n_tiles, batch)]
        self.enc: list[Any] = [None] * len(self.slices)
        self.dec: list[Any] = [None] * len(self.slices)

    def reset(self) -> None:
        self.enc = [None] * len(self.slices)
        self.dec = [None] * len(self.slices)


@torch.no_grad()
def _code_chunk(model: Tokenizer, tiles: torch.Tensor, b: _Batches, key: bool, decode: bool, refine: int = 0,
                slope: float = 0.0, lr: float = DEFAULT_LR):
    """Encode (and optionally decode) all tiles of a chunk; returns (streams, recon tiles, new states).
    `refine` > 0 searches that many steps for better tokens (vtcodec.refine), trading `slope` dB
    per doubling of bits with Adam step `lr`; it decodes, whatever `decode` says (the encoder's
    next state comes from the decoder's)."""
    decode = decode or refine > 0
    dev = next(model.parameters()).device
    streams: dict[str, list] = {}
    recons, enc_states, dec_states = [], [], []
    for i, sl in enumerate(b.slices):
        x = tiles[sl].to(dev)
        with _autocast(dev):
            enc, dec = (None, None) if key else (b.enc[i], b.dec[i])
            if refine:
                lat, es = model.encode_chunk_latents(x, enc, closed_loop=False)
                s, _ = refine_latents(model, x, lat, dec, refine, slope=slope, lr=lr)
                r, ds = model.decode_chunk(s, dec)
                es = model.next_encoder_state(es, ds)
            elif decode:
                s, es, r, ds = model.encode_and_decode_chunk(x, enc, dec)
            else:
                s, es = model.encode_chunk(x, enc)
            if decode:
                recons.append(r.float().cpu())
                dec_states.append(ds)
        enc_states.append(es)
        for name, idx in s.items():
            streams.setdefault(name, []).append(idx.cpu())
    cat = {k: torch.cat(v).numpy() for k, v in streams.items()}
    return cat, (torch.cat(recons) if decode else None), enc_states, dec_states


def _tile_mse(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per-tile MSE on the 8-bit scale of tile batches (N, 3, T, H, W): (N,); the refresh decision
    (a name of its own so tests can steer that decision)."""
    return tile_mse(a, b).numpy() * 127.5**2


def _db(mse_a: np.ndarray, mse_b: np.ndarray) -> np.ndarray:
    """How many dB of PSNR `b` is above `a`, per tile."""
    return 10 * np.log10(np.maximum(mse_a, 1e-9) / np.maximum(mse_b, 1e-9))


def _worth_trying_key(cont_mse: np.ndarray, key_mse: np.ndarray, refresh_db: float) -> np.ndarray:
    """The refresh decision's cheap evidence: a tile's key coding is tried only where continuing
    has fallen more than `refresh_db` below what the tile's last key coding reached (its content
    moved on, or a cut). A tile still near its key quality could not gain that much from a restart
    unless its content got easier, so the encoder skips coding and decoding every chunk twice."""
    return _db(cont_mse, key_mse) > refresh_db


def _mix(tok: Tokenizer, b: _Batches, sel: np.ndarray, cont: tuple, key: tuple, key_names: set[str]):
    """A partial refresh: tiles in `sel` take the key coding, the others continue.
    Returns (streams: non-key streams for all tiles + key streams for the `sel` tiles only,
    encoder states, decoder states)."""
    (s_c, es_c, ds_c), (s_k, es_k, ds_k) = cont, key
    streams = {k: (s_k[k][sel] if k in key_names else np.where(sel[:, None], s_k[k], s_c[k])) for k in s_k}
    dev = next(tok.parameters()).device
    es, ds = list(es_c), list(ds_c)
    for i, sl in enumerate(b.slices):
        m = torch.from_numpy(sel[sl]).to(dev)
        if m.any():
            es[i] = tok.replace_state_rows(es_c[i], m, tok.state_rows(es_k[i], m))
            ds[i] = tok.replace_state_rows(ds_c[i], m, tok.state_rows(ds_k[i], m))
    return streams, es, ds


# what a .vtk output must not be named like: the videos and images vtcodec reads, and other common
# video and elementary-stream suffixes
_MEDIA_SUFFIXES = VIDEO_EXT | IMAGE_EXT | {".ts", ".gif", ".yuv", ".264", ".h264", ".265", ".hevc", ".ivf",
                                           ".flv", ".wmv", ".3gp"}


def _check_vtk_name(dst) -> None:
    """Refuse a .vtk output named like a video or an image (`-o out.mp4`: a token file under a
    name players would open), or '-' (standard output, which is not supported)."""
    text = os.fspath(dst)
    if text == "-":
        raise OutputError("output '-' (standard output) is not supported; name a .vtk file")
    suffix = Path(text).suffix.lower()
    if suffix in _MEDIA_SUFFIXES:
        raise OutputError(f"output {text!r} is named like a {suffix} file, but encode writes tokens; "
                          f"name it {Path(text).with_suffix('.vtk').name!r} (`vtcodec decode` makes the video)")


def encode_file(src: str | Path, dst: str | Path, *, model: str | Path = "tivtok", device: str = "auto",
                force: bool = False, segment_chunks: int = 8, refresh_db: float | None = 1.0,
                overlap: int = 0, tile_batch: int = 8, refine: int = 0, refine_slope: float = 0.0,
                refine_lr: float | None = None, quality: int | None = None,
                progress: Progress | None = None) -> EncodeResult:
    """Encode the video `src` into the .vtk file `dst`.

    segment_chunks: a key chunk (random-access point) at least every this many chunks.
    refresh_db: restart a tile when that beats continuing by more than this many dB of PSNR on
        that tile; all tiles at once makes a key chunk (None: never decide adaptively, only
        every `segment_chunks`).
    overlap: minimum overlap of neighbouring tiles in pixels, blended at decode. 0 by default:
        on the validation split at 256x256, 16 (9 tiles instead of 4) cost the baseline 1.7x the
        bits for +0.19 dB and its first TivTok 1.3x for +0.09 dB -- a poor trade -- but hides
        tile seams (`benchmarks/rd_sweep.py out/val <model> overlap=16,0`).
    refine: encoder-side search steps per chunk (vtcodec.refine): better tokens for the same
        decoder, at `refine` decoder passes forward and backward per chunk; 0 (default) is off.
    refine_slope: with refine, the dB of PSNR a token change must buy per doubling of a tile's
        bits (0: quality only, whatever the bits).
    refine_lr: with refine, the search's Adam step on the latents (None: refine.DEFAULT_LR).
    quality: the rate step, 0 (fewest bits) to the model's QUALITIES - 1 (None: the model's
        default); only models that offer several rates from one checkpoint take it.
    The output is written atomically; an existing `dst` is refused unless `force`.
    """
    t0 = time.perf_counter()
    info = probe(src)
    ckpt = None if isinstance(model, Tokenizer) else resolve_model(model)
    check_file_output(src, dst, force, "a .vtk file", inputs=(ckpt,))
    _check_vtk_name(dst)
    for name, value in (("segment_chunks", segment_chunks), ("tile_batch", tile_batch)):
        if problem := whole_number_problem(name, value):
            raise VtcodecError(problem)
    if refresh_db is not None and math.isnan(refresh_db):  # a negative one refreshes even at a loss: allowed
        raise VtcodecError("refresh_db must be a number of dB ('inf': never refresh), got nan")
    refine_lr = check_settings(refine, refine_slope, refine_lr)
    tok = model if isinstance(model, Tokenizer) else load_tokenizer(ckpt, device)
    if refine and type(tok).encode_chunk_latents is Tokenizer.encode_chunk_latents:
        raise ModelError(f"model {tok.key} ({tok.arch}) exposes no latents to refine; encode without --refine")
    overlap = overlap if tok.tile else 0  # whole frames have no tiles to overlap
    _check_overlap(tok, overlap, VtcodecError)
    if quality is not None and not tok.QUALITIES:
        raise VtcodecError(f"model {tok.key} has one rate; encode without --quality")
    if quality is not None and not 0 <= quality < tok.QUALITIES:
        raise VtcodecError(f"--quality must be in [0, {tok.QUALITIES - 1}] for model {tok.key}, got {quality}")
    tok.quality = quality
    layout = TileLayout(info.height, info.width, tok.tile, overlap)
    tok.set_frame(*layout.padded)
    cf = tok.chunk_frames
    key_names = _key_streams(tok)
    levels, grids = tok.stream_levels, tok.stream_grids
    coder = SegmentCoder(levels, grids)  # the payloads; its `spec`: each stream's levels and grid
    header = {
        "model": tok.key, "arch": tok.arch, "checkpoint_sha256": tok.sha256,
        "width": info.width, "height": info.height, "fps": f"{info.fps.numerator}/{info.fps.denominator}",
        "frame_count": info.frame_count, "chunk_frames": cf, "tile": tok.tile, "overlap": overlap,
        "tile_batch": tile_batch, "tiles": layout.count, "pad_box": [0, 0, *layout.padded],
        "stream_levels": levels, "stream_grids": {k: list(g) for k, g in grids.items()},
        "key_streams": sorted(key_names), "segment_chunks": segment_chunks,
        "refresh_db": refresh_db if refresh_db is not None and math.isfinite(refresh_db) else None, "pixels_per_token": tok.pixels_per_token, "vtcodec_version": __version__,
    }
    if quality is not None:  # informational: the decoder needs nothing from it
        header["quality"] = quality
    if refine:  # informational, like refresh_db: the decoder needs nothing from it
        header["refine"] = {"steps": refine, "slope": refine_slope, "lr": refine_lr}
    b = _Batches(layout.count, tile_batch)
    adaptive = refresh_db is not None and math.isfinite(refresh_db)
    track = adaptive or refine > 0  # decoder states are needed to compare restarts and to refine
    tokens = chunks = keys = done = refreshes = 0
    since_key = 0
    with VtkWriter(dst, header, force=force) as w:
        for i, frames in enumerate(read_chunks(src, cf, info=info)):
            n = frames.shape[0]
            tiles = layout.split(frames_to_video(frames, cf))
            key = i == 0 or since_key >= segment_chunks
            streams, recon, es, ds = _code_chunk(tok, tiles, b, key, decode=track, refine=refine, slope=refine_slope,
                                                 lr=refine_lr)
            partial = None
            if adaptive and key:
                key_mse = _tile_mse(recon, tiles)
            elif adaptive:
                cont_mse = _tile_mse(recon, tiles)
                if _worth_trying_key(cont_mse, key_mse, refresh_db).any():
                    k_coded = _code_chunk(tok, tiles, b, True, decode=True, refine=refine, slope=refine_slope,
                                          lr=refine_lr)
                    k_mse = _tile_mse(k_coded[1], tiles)
                    sel = _db(cont_mse, k_mse) > refresh_db
                    key_mse = np.where(sel, k_mse, key_mse)
                    if sel.all():
                        key, streams, _, es, ds = True, *k_coded
                    elif sel.any():
                        partial = np.flatnonzero(sel)
                        streams, es, ds = _mix(tok, b, sel, (streams, es, ds), (k_coded[0], k_coded[2], k_coded[3]),
                                               key_names)
            b.enc, b.dec = es, (ds if track else b.dec)
            since_key = 1 if key else since_key + 1
            w.begin_chunk(i, done, n, key)
            if key:
                w.write_unit(SEGMENT, json.dumps({"chunk": i, "first_frame": done}, separators=(",", ":")).encode())
                coder.start()
                shared = {k: v for k, v in streams.items() if k in key_names}
                if shared:
                    w.write_unit(SHARED, coder.pack(shared))
            elif partial is not None:
                w.write_unit(SHARED, pack_streams({REFRESH_TILES: (partial, [layout.count]),
                                                   **{k: (streams[k], *coder.spec[k]) for k in sorted(key_names)}}))
                refreshes += len(partial)
            w.write_unit(TOKENS, coder.pack({k: v for k, v in streams.items() if k not in key_names}))
            tokens += tok.count_tokens(streams)
            chunks, keys, done = chunks + 1, keys + key, done + n
            if progress:
                progress(done, info.frame_count)
    size = Path(dst).stat().st_size
    return EncodeResult(Path(dst), tok.key, done, info.width, info.height, chunks, keys, refreshes, tokens, size,
                        8 * size / (done * info.width * info.height), time.perf_counter() - t0)


def _check_overlap(tok: Tokenizer, overlap: int, error: type[Exception]) -> None:
    """Tile models: overlap in [0, tile / 2); whole-frame models (tile 0): none."""
    if tok.tile == 0 and overlap != 0:
        raise error(f"model {tok.key} codes whole frames: overlap must be 0, got {overlap}")
    if tok.tile and not 0 <= overlap < tok.tile // 2:
        raise error(f"overlap must be in [0, {tok.tile // 2}) for tile {tok.tile}, got {overlap}")


def _model_for(header: dict, device: str, model: Tokenizer | str | Path | None) -> Tokenizer:
    """The model that decodes a file: `model` as given, or the checkpoint its header names
    (found by hash; or `model` as a key or .safetensors path, which must be that checkpoint)."""
    if not isinstance(model, Tokenizer):
        key, sha = str(header["model"]), str(header["checkpoint_sha256"])
        path = find_by_sha(key, sha) if model is None else resolve_model(model)
        if model is not None and sha256_file(path) != sha:
            raise ModelError(f"{path} is not the checkpoint this file was written with ({key}, sha256 {sha})")
        model = _load(path, device, key, sha)
    if (model.tile, model.chunk_frames) != (header.get("tile"), header["chunk_frames"]):
        raise FormatError(f"header tile/chunk ({header.get('tile')}, {header['chunk_frames']}) does not match "
                          f"model {model.key} ({model.tile}, {model.chunk_frames})")
    return model


def iter_decode(src: str | Path, *, start: int = 0, stop: int | None = None, device: str = "auto",
                model: Tokenizer | str | Path | None = None, reference: np.ndarray | None = None,
                progress: Progress | None = None) -> Iterator[np.ndarray]:
    """Yield decoded uint8 frame blocks (t, H, W, 3) of frames [start, stop) of a .vtk file.

    `reference` (H, W, 3) uint8: decode with this frame as every segment's reference instead of
    the coded one (zero-shot editing; models whose state is a reference frame only).
    """
    with VtkReader(src) as r:
        h = r.header
        tok = _model_for(h, device, model)
        dev = next(tok.parameters()).device
        total = h["frame_count"]
        stop = total if stop is None else min(stop, total)
        if not 0 <= start < stop:
            raise VtcodecError(f"frame range [{start}, {stop}) is empty or outside the video's {total} frames")
        try:
            _check_overlap(tok, int(h["overlap"]), ValueError)
            if int(h["tile_batch"]) < 1:
                raise ValueError(f"tile_batch {h['tile_batch']} out of range")
            layout = TileLayout(int(h["height"]), int(h["width"]), tok.tile, int(h["overlap"]))
            tok.set_frame(*layout.padded)
            b = _Batches(layout.count, int(h["tile_batch"]))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            raise FormatError(f"{src}: header field missing or malformed ({e})") from None
        if reference is not None:
            if not hasattr(tok, "state_from_reference"):
                raise ModelError(f"model {tok.key} ({tok.arch}) has no reference frame to edit; use a reftok or tivtok2 .vtk")
            ref_tiles = layout.split(frames_to_video(reference[None], 1))[:, :, 0]
        else:
            ref_tiles = None
        key_names = _key_streams(tok)
        want_levels = tok.stream_levels
        done = start  # frames yielded so far end here (shape_contract)
        for c in chunks_of(r, start, stop):
            refresh = None
            bad = sorted(k for k, lv in c.levels.items() if want_levels.get(k, lv) != lv)
            if bad:  # the same indices under other levels would decode to other codes, silently
                raise FormatError(f"chunk {c.chunk}: stream {bad[0]!r} has levels {c.levels[bad[0]]}, "
                                  f"model {tok.key} uses {want_levels[bad[0]]}")
            if c.key:
                b.reset()
                streams = c.streams
                _check_streams(tok, streams, layout.count, True, c.chunk)
            else:  # continuing streams for every tile (+ in a partial refresh, key streams for some)
                streams = {k: v for k, v in c.streams.items() if k not in c.shared}
                _check_streams(tok, streams, layout.count, False, c.chunk)
                if c.refreshed is not None:  # key streams scattered to full rows, with the rows' mask
                    refresh, full = _partial_refresh(tok, c, layout.count, key_names)
                    streams = {**full, **streams}
            # a chunk before the range whose state the key streams alone give: no pixels to decode
            unseen = tok.STATE_FROM_KEY and c.first_frame + c.n_frames <= start
            outs = []
            for i, sl in enumerate(b.slices):  # (an unseen chunk's state needs its key streams only)
                s: Streams = {k: torch.from_numpy(v[sl]).to(dev) for k, v in streams.items() if not unseen or k in key_names}
                refs = None if ref_tiles is None else ref_tiles[sl].to(dev)
                with torch.no_grad(), _autocast(dev):
                    if unseen:
                        b.dec[i] = _state_only(tok, s, b.dec[i], c.key,
                                               None if refresh is None else torch.from_numpy(refresh[sl]).to(dev), refs)
                        continue
                    if c.key:
                        video, b.dec[i] = tok.decode_chunk(*_restart(tok, s, refs, key_names))
                    elif refresh is not None and refresh[sl].any():
                        video, b.dec[i] = _decode_partial(tok, s, b.dec[i], torch.from_numpy(refresh[sl]).to(dev),
                                                          refs, key_names)
                    else:  # continuing tiles never see key streams (a partial refresh's zero rows)
                        video, b.dec[i] = tok.decode_chunk({k: v for k, v in s.items() if k not in key_names}, b.dec[i])
                outs.append(video.float().cpu())
            if unseen:
                continue
            frames = video_to_frames(layout.merge(torch.cat(outs)), c.n_frames)
            lo, hi = max(start, c.first_frame), min(stop, c.first_frame + c.n_frames)
            if lo < hi:
                block = frames[lo - c.first_frame: hi - c.first_frame]
                done = shape_contract(block, h, lo, hi, done, src)
                yield block
                if progress:
                    progress(hi - start, stop - start)
        shape_contract(None, h, start, stop, done, src)


def shape_contract(block, header: dict, lo: int, hi: int, expected_lo: int, src) -> int:
    """Check that a decoded block is frames [lo, hi), following on from `expected_lo`, at the
    header's size (uint8 (hi - lo, height, width, 3)); returns hi. A decode returns exactly what the
    header promises or fails with a FormatError, never something else (issue 23). iter_decode
    calls it on every block it yields (`block=None`: at the end, that the frames reached `hi`)."""
    if block is None:
        if expected_lo != hi:
            raise FormatError(f"{src}: decoding stopped at frame {expected_lo}, the header promises frames up to {hi}")
        return hi
    want = (hi - lo, int(header["height"]), int(header["width"]), 3)
    if lo != expected_lo or not isinstance(block, np.ndarray) or block.dtype != np.uint8 or block.shape != want:
        got = getattr(block, "shape", None)
        raise FormatError(f"{src}: frames [{lo}, {hi}) decode to shape {got} from frame {expected_lo}, "
                          f"the header promises {want}")
    return hi


def _state_only(tok: Tokenizer, s: Streams, state, key: bool, m: torch.Tensor | None, refs: torch.Tensor | None):
    """The state after a chunk nobody will see, for a model whose state follows from its key
    streams alone (Tokenizer.STATE_FROM_KEY): restarted tiles (all on a key chunk, those in the
    mask `m` on a partial refresh) take it from their key streams (or the edit reference), the
    others keep theirs."""
    if key:
        return tok.key_state(s) if refs is None else tok.state_from_reference(refs)
    if m is None or not m.any():
        return state
    new = tok.key_state({k: v[m] for k, v in s.items()}) if refs is None else tok.state_from_reference(refs[m])
    return tok.replace_state_rows(state, m, new)


def _partial_refresh(tok: Tokenizer, c: TokenChunk, n_tiles: int, key_names: set[str]):
    """A partially refreshed chunk -> (bool mask of the restarted tiles (n_tiles,), their key
    streams scattered to n_tiles rows (rows of tiles that continue are zero and unused))."""
    tiles = c.refreshed
    if tiles[-1] >= n_tiles:
        raise FormatError(f"chunk {c.chunk}: partial refresh names tile {tiles[-1]} of {n_tiles}")
    want = tok.tokens_per_chunk(True)
    keyed = {k: v for k, v in c.streams.items() if k in c.shared}
    if set(keyed) != key_names or any(v.shape != (len(tiles), want[k]) for k, v in keyed.items()):
        raise FormatError(f"chunk {c.chunk}: partial refresh streams {sorted(keyed)} do not match "
                          f"{tok.key}'s key streams {sorted(key_names)} for {len(tiles)} tiles")
    mask = np.zeros(n_tiles, dtype=bool)
    mask[tiles] = True
    full = {k: np.zeros((n_tiles, want[k]), dtype=v.dtype) for k, v in keyed.items()}
    for k, v in keyed.items():
        full[k][tiles] = v
    return mask, full


def _restart(tok: Tokenizer, s: Streams, refs: torch.Tensor | None, key_names: set[str]) -> tuple[Streams, Any]:
    """(streams, state) for tiles that start a segment: no state, or with `refs` (zero-shot
    editing) the edited reference as state and the coded key streams dropped."""
    if refs is None:
        return s, None
    return {k: v for k, v in s.items() if k not in key_names}, tok.state_from_reference(refs)


def _decode_partial(tok: Tokenizer, s: Streams, state, m: torch.Tensor, refs: torch.Tensor | None,
                    key_names: set[str]):
    """Decode one batch of a partially refreshed chunk: tiles in the bool mask `m` restart from
    their key streams (or the edit reference), the others continue from `state`; returns (video,
    the batch's new state)."""
    v_new, st_new = tok.decode_chunk(*_restart(tok, {k: v[m] for k, v in s.items()},
                                                None if refs is None else refs[m], key_names))
    video = torch.empty((len(m), *v_new.shape[1:]), dtype=v_new.dtype, device=v_new.device)
    video[m] = v_new
    state = tok.replace_state_rows(state, m, st_new)
    if not m.all():
        cont = {k: v[~m] for k, v in s.items() if k not in key_names}
        v_old, st_old = tok.decode_chunk(cont, tok.state_rows(state, ~m))
        video[~m] = v_old.to(video.dtype)
        state = tok.replace_state_rows(state, ~m, st_old)
    return video, state


def decode_frames(src: str | Path, *, start: int = 0, stop: int | None = None, device: str = "auto",
                  model: Tokenizer | str | Path | None = None) -> np.ndarray:
    """Decode a .vtk file (or a frame range of it) into memory: uint8 (T, H, W, 3)."""
    return np.concatenate(list(iter_decode(src, start=start, stop=stop, device=device, model=model)))


def decode_file(src: str | Path, dst: str | Path, *, start: int = 0, stop: int | None = None,
                device: str = "auto", force: bool = False, lossless: bool = False, crf: int = 12,
                reference: str | Path | None = None, model: Tokenizer | str | Path | None = None,
                progress: Progress | None = None) -> DecodeResult:
    """Decode a .vtk file into a video (.mp4/.mkv H.264, .y4m, or a PNG folder `dir/`), atomically.

    `reference`: an image to use as the reference frame (RefTok zero-shot editing; for a
    `tivtok2` file, the TIV image every chunk of a segment builds on).
    """
    t0 = time.perf_counter()
    check_output_path(src, dst, force, inputs=(reference,))
    with VtkReader(src) as r:
        h = dict(r.header)
    try:
        fps = Fraction(h["fps"])
    except (ValueError, ZeroDivisionError):
        raise FormatError(f"{src}: bad fps {h['fps']!r} in header") from None
    ref = None
    if reference is not None:
        ref = _load_reference(reference, int(h["width"]), int(h["height"]))
    n = 0
    with VideoWriter(dst, int(h["width"]), int(h["height"]), fps, lossless=lossless, crf=crf, force=force) as w:
        for block in iter_decode(src, start=start, stop=stop, device=device, model=model, reference=ref,
                                 progress=progress):
            w.write(block)
            n += len(block)
    return DecodeResult(Path(dst), n, int(h["width"]), int(h["height"]), time.perf_counter() - t0)


def _load_reference(path: str | Path, width: int, height: int) -> np.ndarray:
    # an image file, or the first frame of a video / PNG folder
    img = read_image(path) if Path(path).is_file() else next(read_chunks(path, 1))[0]
    if img.shape[:2] != (height, width):
        t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
        t = torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
        img = t[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
    return img
