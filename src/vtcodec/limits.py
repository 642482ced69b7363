"""What a reader accepts from an untrusted file: the documented limits and the codec header model.

A `.vtk` file, a video given to `encode` and a checkpoint given by path are untrusted input. The
container (container.py) checks the bytes; this module checks what they *claim*: every field of
the codec's JSON header has a type, a range and cross-checks against the other fields, and the
picture size, frame count and tile count a file may declare are capped, as FFmpeg caps pixels
(`-max_pixels`). A decode's memory then follows from the frame size these limits allow, never
from a number the header merely states.

The defaults cover 4K UHD and DCI 4K (4096 x 2304 = 9 437 184 pixels per frame), a day of
video at 60 fps (2**23 frames) and chunks of up to 256 frames. Raise or lower them for one
process with the environment (VTCODEC_MAX_PIXELS, VTCODEC_MAX_FRAMES), or for a block of code
with ``with limits.using(Limits(max_pixels=...)):``; a reader given ``limits=`` uses those.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import re
from dataclasses import dataclass, replace

from vtcodec.errors import VtcodecError

MAX_JSON_DEPTH = 8          # the codec's headers nest 3 deep ({"stream_grids": {"tv": [..]}})
MAX_STRING = 256            # any JSON string in a header: model keys, stream names, versions
MAX_STREAMS = 16            # streams a header may describe
MAX_GRID_SIDE = 1 << 16     # one axis of a stream grid


@dataclass(frozen=True)
class Limits:
    """Caps on what a file (or an input video) may declare; all checked before allocating."""

    max_pixels: int = 4096 * 2304     # width x height of one frame
    max_side: int = 16384             # width or height
    max_frames: int = 1 << 23         # frame_count
    max_chunk_frames: int = 256       # chunk_frames
    max_tiles: int = 4096             # tiles per chunk
    # fewest pixels per token a stream grid may imply: no tokenizer codes a tile in more tokens
    # than a quarter of its pixels, so a forged grid cannot size a unit far past the picture
    min_pixels_per_token: int = 4

    def __post_init__(self):
        for name in ("max_pixels", "max_side", "max_frames", "max_chunk_frames", "max_tiles", "min_pixels_per_token"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise VtcodecError(f"limit {name} must be a whole number >= 1, got {v!r}")

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, with VTCODEC_MAX_PIXELS / VTCODEC_MAX_FRAMES applied when set."""
        out = cls()
        for var, name in (("VTCODEC_MAX_PIXELS", "max_pixels"), ("VTCODEC_MAX_FRAMES", "max_frames")):
            text = os.environ.get(var)
            if text:
                try:
                    value = int(text)
                except ValueError:
                    raise VtcodecError(f"${var} must be a whole number, got {text!r}") from None
                out = replace(out, **{name: value})
        return out


_current: contextvars.ContextVar[Limits | None] = contextvars.ContextVar("vtcodec_limits", default=None)


def current() -> Limits:
    """The limits in force: set by `using`, else the defaults with the environment applied."""
    lim = _current.get()
    return Limits.from_env() if lim is None else lim


@contextlib.contextmanager
def using(lim: Limits):
    """Apply `lim` to every reader opened inside the block (this thread / task only)."""
    token = _current.set(lim)
    try:
        yield lim
    finally:
        _current.reset(token)


def picture_problem(width: int, height: int, lim: Limits, what: str = "frame") -> str | None:
    """Why a width x height picture exceeds `lim` (None if it does not)."""
    if width > lim.max_side or height > lim.max_side:
        return f"{what} {width}x{height} has a side over the {lim.max_side}-pixel limit"
    if width * height > lim.max_pixels:
        return (f"{what} {width}x{height} is {width * height} pixels, over the {lim.max_pixels}-pixel limit "
                "(raise it with VTCODEC_MAX_PIXELS)")
    return None


# ------------------------------------------------------------------------------ JSON before parsing

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def json_depth(text: bytes) -> int:
    """The deepest nesting of [ and { in JSON text, strings skipped; a linear scan, no recursion,
    so it can run before json.loads (whose recursion a deep document exhausts)."""
    bare = _STRINGS.sub(b"", text)
    depth = deepest = 0
    for m in re.finditer(rb"[\[\]{}]", bare):
        depth += 1 if m.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def parse_float(text: str) -> float:
    """json.loads' float hook: a number that parses to inf (1e400) is no number."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


# ------------------------------------------------------------------------------- the header model

def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_in(h: dict, key: str, lo: int, hi: int) -> str | None:
    v = h[key]
    if not _int(v) or not lo <= v <= hi:
        return f"{key!r} must be an int in [{lo}, {hi}], got {_short(v)}"
    return None


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _strings(v, max_len: int = MAX_STRING) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= max_len


FRAME_MULTIPLE = 16  # whole-frame models (tile 0) see frames padded to a multiple of this


def padded_size(height: int, width: int, tile: int) -> tuple[int, int]:
    """The frame size a model codes (vtcodec.tiling.TileLayout.padded, without torch)."""
    if tile == 0:
        m = FRAME_MULTIPLE
        return -(-height // m) * m, -(-width // m) * m
    return max(height, tile), max(width, tile)


def tile_count(height: int, width: int, tile: int, overlap: int) -> int:
    """Tiles per chunk for a frame size (vtcodec.tiling.TileLayout.count, without torch)."""
    if tile == 0:
        return 1

    def per_axis(length: int) -> int:
        length = max(length, tile)
        return 1 if length <= tile else math.ceil((length - overlap) / (tile - overlap))
    return per_axis(height) * per_axis(width)


def header_problem(h: dict, lim: Limits) -> str | None:
    """Why a header (already holding the container's required keys, typed) breaks the codec's
    header model or `lim`, naming the field; None if it holds. Keys the codec writes are optional
    (files of the container tests and early writers lack them) but checked whenever present."""
    if len(h["model"]) > MAX_STRING:
        return f"'model' is {len(h['model'])} characters (limit {MAX_STRING})"
    if len(h["fps"]) > 21:  # two u32-sized decimals and a slash
        return f"'fps' {_short(h['fps'])} is too long"
    num, den = (int(x) for x in h["fps"].split("/"))
    if num >= 1 << 32 or den >= 1 << 32:
        return f"'fps' {h['fps']!r} has a term of 2**32 or more"
    if p := picture_problem(h["width"], h["height"], lim, "frame size"):
        return f"'width'/'height': {p}"
    for key, hi in (("frame_count", lim.max_frames), ("chunk_frames", lim.max_chunk_frames)):
        if h[key] > hi:
            return f"{key!r} is {h[key]}, over the limit of {hi}"
    if "arch" in h and not _strings(h["arch"], 64):
        return f"'arch' must be a short string, got {_short(h['arch'])}"
    if "tile" in h and h["tile"] != 0 and (why := _int_in(h, "tile", 8, 4096)):  # 0: whole frames
        return why
    if "overlap" in h:
        top = (h["tile"] // 2 - 1 if h["tile"] else 0) if _int(h.get("tile")) else 4095
        if why := _int_in(h, "overlap", 0, top):
            return why
    if "tile_batch" in h and (why := _int_in(h, "tile_batch", 1, lim.max_tiles)):
        return why
    if "tiles" in h:
        if why := _int_in(h, "tiles", 1, lim.max_tiles):
            return why
        if "tile" in h:
            want = tile_count(h["height"], h["width"], h["tile"], h.get("overlap", 0))
            if h["tiles"] != want:
                return (f"'tiles' is {h['tiles']}, but a {h['width']}x{h['height']} frame in tiles of {h['tile']} "
                        f"(overlap {h.get('overlap', 0)}) makes {want}")
    if "pad_box" in h and "tile" in h:
        want = [0, 0, *padded_size(h["height"], h["width"], h["tile"])]
        if h["pad_box"] != want or any(not _int(v) for v in h["pad_box"]):
            return f"'pad_box' must be {want} for this frame and tile, got {_short(h['pad_box'])}"
    if "stream_levels" in h and (why := _levels_problem(h["stream_levels"])):
        return why
    if "stream_grids" in h and (why := _grids_problem(h, lim)):
        return why
    if "key_streams" in h:
        ks = h["key_streams"]
        if not isinstance(ks, list) or len(ks) > MAX_STREAMS or not all(_strings(k) for k in ks) \
                or len(set(ks)) != len(ks):
            return f"'key_streams' must be a list of distinct stream names, got {_short(ks)}"
    if "segment_chunks" in h and (why := _int_in(h, "segment_chunks", 1, 1 << 32)):
        return why
    for key in ("refresh_db", "pixels_per_token"):
        v = h.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"{key!r} must be a number or null, got {_short(v)}"
    if "vtcodec_version" in h and not _strings(h["vtcodec_version"], 64):
        return f"'vtcodec_version' must be a short string, got {_short(h['vtcodec_version'])}"
    return None


def _levels_problem(sl) -> str | None:
    if not isinstance(sl, dict) or len(sl) > MAX_STREAMS:
        return f"'stream_levels' must be an object of at most {MAX_STREAMS} streams, got {_short(sl)}"
    for name, lv in sl.items():
        if not _strings(name) or not isinstance(lv, list) or not 1 <= len(lv) <= 32 \
                or any(not _int(x) or not 2 <= x <= 1 << 32 for x in lv) or math.prod(lv) > 1 << 32:
            return (f"'stream_levels' entry {_short(name)}: {_short(lv)} is not a list of 1-32 levels >= 2 "
                    "(product <= 2**32)")
    return None


def _grids_problem(h: dict, lim: Limits) -> str | None:
    g = h["stream_grids"]
    if not isinstance(g, dict) or len(g) > MAX_STREAMS:
        return f"'stream_grids' must be an object of at most {MAX_STREAMS} streams, got {_short(g)}"
    for name, grid in g.items():
        if not _strings(name) or not isinstance(grid, list) or len(grid) != 3 \
                or any(not _int(x) or not 1 <= x <= MAX_GRID_SIDE for x in grid):
            return (f"'stream_grids' entry {_short(name)}: {_short(grid)} is not [T, H, W] of ints "
                    f"in [1, {MAX_GRID_SIDE}]")
    tile = h["tile"] if _int(h.get("tile")) else 4096
    th, tw = padded_size(h["height"], h["width"], 0) if tile == 0 else (tile, tile)
    per_tile = sum(math.prod(grid) for grid in g.values())
    most = th * tw * h["chunk_frames"] // lim.min_pixels_per_token
    if per_tile > most:
        return (f"'stream_grids' declare {per_tile} tokens per tile, more than a {tw}x{th} tile of "
                f"{h['chunk_frames']} frames can need ({most})")
    return None


def unit_token_limit(header: dict, default: int = 1 << 24) -> int:
    """The most tokens one SHARED or TOKENS unit can hold by a (validated) header: every stream
    for every tile, plus a partial refresh's tile list. Without `stream_grids` (files from earlier
    writers), what the frame size allows: `tiles` tiles of tile x tile pixels and chunk_frames
    frames at `min_pixels_per_token`; `default` when the header has neither. Checked before a
    payload is decoded, so a forged unit of a few bytes cannot make a reader decode millions of
    range-coded digits or inflate a zstd bomb: a reader's memory follows the frame size."""
    tiles, grids, tile = header.get("tiles"), header.get("stream_grids"), header.get("tile")
    if not _int(tiles) or tiles < 1:
        return default
    if isinstance(grids, dict) and grids:
        return tiles * (sum(math.prod(g) for g in grids.values()) + 1)
    if _int(tile) and tile >= 1 and _int(header.get("chunk_frames")):
        per_tile = tile * tile * header["chunk_frames"] // Limits.min_pixels_per_token
        return min(default, tiles * (per_tile + 1))
    return default
