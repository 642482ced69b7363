"""Token packing: named integer token arrays <-> one compact byte string.

This docstring is the specification of the packed-token payload, version 2 (version 1 is the
same without layout 2; the same text is in docs/FORMAT.md, section "Packed token payload"). It
is carried inside `.vtk` SHARED and TOKENS units but is self-describing, so it can also be
stored on its own. `pack_streams` writes version 2 and `unpack_streams` reads versions 1 and 2.
Inside a `.vtk` the writer writes version 3 where it can (`SegmentCoder`, at the end of this
module: payloads that take their streams' names and shapes from the file's header and are range
coded with state carried through the segment; docs/FORMAT.md, "Packed token payload, version 3").

Payload layout (all integers little-endian)
-------------------------------------------
::

    offset  size  field
    0       4     magic b"VTP\x02" (the last byte is the packing version: 1 or 2)
    4       1     u8 n_streams (0..255)
    then n_streams stream descriptors, in stream order:
            1     u8 name_len (1..255)
            n     name, UTF-8, names unique within the payload
            1     u8 layout: 0 = digit planes, 1 = fixed-width bits, 2 = range coded
                  (version 2 only; others: reject)
            1     u8 ndim (0..32)
            var   ndim dims, each a uvarint < 2**32, C order (a dim may be 0)
            1     u8 n_levels (1..32)
            var   n_levels levels, each a uvarint >= 2; K = prod(levels) <= 2**32
            layout 2 only:
            var   3 uvarints T, H, W >= 1 with T*H*W = the last dim (the grid, see below)
            var   uvarint section length in bytes (each of these uvarints < 2**32)
    then    var   the layout-2 sections, in stream order, each as long as its descriptor says
    then    var   if any stream has layout 0 or 1, or there are no streams: exactly one zstd
                  frame (RFC 8878) whose header carries the content size; the content is the
                  concatenation, in stream order, of each layout-0/1 stream's data section
                  (below). Writers omit zstd's content checksum (the CRC below covers more);
                  readers let zstd verify one if present. Otherwise nothing.
    end-4   4     u32 CRC32 (zlib.crc32) of every preceding payload byte; nothing follows it.

A uvarint is unsigned LEB128 (as in protobuf): 7 bits per byte, least significant group
first, high bit set on every byte but the last; at most 5 bytes, and a multi-byte uvarint must
not end in a 0x00 byte (one encoding per value). Varints rather than u32 because the dims and
levels are small numbers and the header is a visible share of a payload of a few hundred
tokens.

A stream holds N = prod(dims) indices, each in [0, K). Element order is C (row-major) order of
`dims`. The index of an FSQ code with per-channel digits d_i in [0, levels[i]) is
``sum(d_i * prod(levels[:i]))``: digit 0 is the least significant, exactly as
`vtcodec.quantizers.FSQ.codes_to_indices` computes it. A plain VQ codebook of size K is
described as ``levels = [K]``.

Layout 0, digit planes. Each index is split into its mixed-radix digits
``d_i = (index // prod(levels[:i])) % levels[i]``. A digit whose level is <= 256 is one
plane of N uint8; a digit whose level L is > 256 is split further into B = ceil(bitlen(L-1)/8)
planes holding its base-256 bytes, least significant first (so ``levels=[1024]`` is two planes:
low byte, high byte). Planes are stored one after another, digit 0 first; the section is
N * (total plane count) bytes. A reader must reject any recomposed digit >= its level.

Layout 2, range coded (version 2). The stream must be non-empty with ndim >= 1 and every level
<= 64; its last dim is laid out as the grid (T, H, W), the leading dims are independent groups
(tiles). Its section is the context-adaptive range code specified in `vtcodec.entropy`: each
digit coded against the same digit of its neighbour one step back along T (or, in the first
step, of its left and upper neighbours), with tables that adapt within the section. A reader
rejects a section that decodes outside its tables or is longer than the bytes its decoding reads
(trailing zero bytes up to that length are accepted),
and a payload whose range-coded streams hold more than 2**24 digits in all (checked from the
descriptors, before decoding: a section of a few bytes can legitimately code millions of digits
of one repeated value, so only a limit bounds a forged payload's decoding time).

Layout 1, fixed-width bits. Each index is written as b = max(1, bitlen(K-1)) bits,
most significant bit first, elements back to back with no alignment; the last byte is padded
with zero bits. The section is ceil(N*b/8) bytes. A reader must reject an index >= K and
non-zero padding bits.

A reader must first check the CRC, then reject: bad magic or version, a descriptor running
past the payload, an
empty or duplicate name, an unknown layout (2 in a version-1 payload), a bad grid, more than
2**24 range-coded digits in the payload, a range-coded section that decodes outside its tables
or is longer than its decoding reads, bytes after the layout-2 sections when no stream needs a
zstd frame, more indices in total than the reader's limit, a
zstd frame without a content size, a content size different from the sum of the
section sizes computed from the descriptors (checked BEFORE decompressing, so a forged shape
cannot make it allocate), and any decompression error. Decoded indices are returned as int64 arrays.

Why this layout. Measured on this machine, bits per token (whole payload, headers included),
zstd level 19. "Realistic" tokens are a proxy, not a trained tokenizer: 4x8x8 RGB patches of the
sample videos projected on their top principal components, scaled to unit variance (x1 or x2),
FSQ-bounded and rounded with levels [8,8,8,5,5,5] unless noted. H0 is the zeroth-order entropy
of the joint index (`entropy_bits`); it is no floor here, since zstd also exploits repetition
across latent frames and H0 is biased low at these sample sizes.

======================================  ======  =========  ======  =======
tokens (count)                              H0   int+zstd    bits   planes
======================================  ======  =========  ======  =======
vtest x2 (13824)                         10.55       4.98    4.97     4.81
vtest x2, 2 latent frames (3456)         10.32      10.40   10.42     9.73
traffic x2 (12672)                       11.41       7.51    7.51     6.88
traffic x2, 2 latent frames (3168)       10.71      11.57   11.60    12.12
tree x1 (2400)                            9.30       9.41    9.35     8.03
vtest x1, levels [7,5,5,5,5] (13824)      8.96       3.88    4.08     3.35
uniform over 64000 (13824)               13.56      16.01   16.02    16.78
zipf(1.3) VQ [1024] (13824)               5.29       6.80    6.83     6.29
uniform VQ [1024] (13824)                 9.95      11.94   10.02    10.42
======================================  ======  =========  ======  =======

* plain little-endian uint16 + zstd ("int+zstd", no header) and fixed-width bits + zstd are
  within 1 % of each other on every realistic set, so plain integers are not offered.
* digit planes win by 4-16 % on most realistic sets: each plane is a small-alphabet, skewed,
  spatially correlated byte stream that zstd's literal coder and match finder handle well.
  They lose by up to 5 % on near-uniform tokens (a uniform 5-level plane costs ~2.4 bits where
  log2 5 = 2.32, and Huffman spends >= 1 bit per byte) and on some small busy chunks.

Version 2 added layout 2 (the range coder of vtcodec.entropy; measured on the validation split
with the shipped checkpoints): per stream it takes 13-15 % fewer bits than the
better zstd layout (2 % on TivTok's TV tokens), and a payload whose streams are all range coded
carries no zstd frame (whose header alone takes 9 bytes). zstd still wins on exact long repeats
of random tokens (tests/test_packing.py, test_range_layout_uses_the_temporal_context), so the
encoder keeps trying every layout.

Neither zstd layout wins always, so the encoder tries every layout per stream (compressing each
zstd one alone, at the requested level) and stores a layout byte: one byte per stream and two extra zstd runs at
encode time (10-250 ms for 14k tokens at level 19 on this machine). All streams of one call
share one zstd frame because each frame carries its own header and Huffman tables, which
dominate at the few-thousand-token sizes a chunk produces. The trailing CRC32 (4 bytes) covers
the descriptors too (zstd's own checksum would cover only the content, so a flipped bit in a
stream name would go unnoticed); it makes any corrupted payload fail loudly, even outside a
`.vtk` container.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import zstandard

from vtcodec import entropy
from vtcodec.errors import FormatError, VtcodecError
from vtcodec.wire import Cursor as _Cursor
from vtcodec.wire import uvarint as _uvarint

__all__ = [
    "PACKING_VERSION",
    "LAYOUT_PLANES",
    "LAYOUT_BITS",
    "LAYOUT_RANGE",
    "pack_streams",
    "SegmentCoder",
    "payload_layouts",
    "unpack_streams",
    "entropy_bits",
    "packed_bits_per_token",
]

PACKING_VERSION = 3          # what a .vtk writer writes (SegmentCoder); pack_streams alone writes version 2
READ_VERSIONS = (1, 2)       # what unpack_streams reads on its own; version 3 needs its file (SegmentCoder)
MAGIC = b"VTP\x02"
MAGIC3 = b"VTP\x03"
LAYOUT_PLANES = 0
LAYOUT_BITS = 1
LAYOUT_RANGE = 2             # version 2 only: context-adaptive range coding (vtcodec.entropy)
_LAYOUT_NAMES = {"planes": LAYOUT_PLANES, "bits": LAYOUT_BITS, "range": LAYOUT_RANGE}
_ZSTD_LAYOUTS = (LAYOUT_PLANES, LAYOUT_BITS)

MAX_NDIM = 32
MAX_LEVELS = 32
MAX_K = 1 << 32
# Bit (un)packing expands to one byte per bit in numpy; working in blocks of this many elements
# (a multiple of 8, so every block starts on a byte boundary) keeps that temporary small.
_BLOCK = 1 << 16
# Bounds the decoder's window allocation for a forged frame; level 19 uses 8 MiB.
_MAX_WINDOW = 1 << 27
# What a reader decodes from one payload at most, unless told otherwise: 2**24 indices (128 MiB as
# int64) and 256 MiB of zstd content (a unit's size limit). A few kB of zstd can declare gigabytes
# of legitimately repetitive content, so only a limit bounds a forged payload's memory.
MAX_ELEMENTS = 1 << 24
MAX_ZSTD_CONTENT = 256 << 20


# --------------------------------------------------------------------------------------------
# layout helpers


def _byte_planes(level: int) -> int:
    """How many uint8 planes one digit of this level takes in layout 0."""
    return 1 if level <= 256 else ((level - 1).bit_length() + 7) // 8


def _bits_width(k: int) -> int:
    return max(1, (k - 1).bit_length())


def _section_size(layout: int, n: int, levels: list[int]) -> int:
    if layout == LAYOUT_PLANES:
        return n * sum(_byte_planes(level) for level in levels)
    return (n * _bits_width(math.prod(levels)) + 7) // 8


def _encode_planes(flat: np.ndarray, levels: list[int]) -> bytes:
    out = []
    for level, digit in zip(levels, entropy.split_digits(flat.astype(np.int64), levels)):
        for j in range(_byte_planes(level)):
            out.append(((digit >> (8 * j)) & 0xFF).astype(np.uint8).tobytes())
    return b"".join(out)


def _decode_planes(data: memoryview, n: int, levels: list[int], name: str) -> np.ndarray:
    planes = np.frombuffer(data, dtype=np.uint8)
    index = np.zeros(n, dtype=np.int64)
    basis = 1
    p = 0
    for i, level in enumerate(levels):
        digit = np.zeros(n, dtype=np.int64)
        for j in range(_byte_planes(level)):
            digit |= planes[p * n : (p + 1) * n].astype(np.int64) << (8 * j)
            p += 1
        if n and int(digit.max()) >= level:
            bad = int(np.argmax(digit >= level))
            raise FormatError(
                f"corrupt packed tokens: stream {name!r} element {bad} has digit {i} = "
                f"{int(digit[bad])}, outside levels[{i}] = {level}"
            )
        index += digit * basis
        basis *= level
    return index


def _encode_bits(flat: np.ndarray, k: int) -> bytes:
    b = _bits_width(k)
    shifts = np.arange(b - 1, -1, -1, dtype=np.uint64)
    out = []
    for s in range(0, flat.size, _BLOCK):
        v = flat[s : s + _BLOCK].astype(np.uint64)
        bits = ((v[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        out.append(np.packbits(bits.reshape(-1)).tobytes())
    return b"".join(out)


def _decode_bits(data: memoryview, n: int, k: int, name: str) -> np.ndarray:
    b = _bits_width(k)
    raw = np.frombuffer(data, dtype=np.uint8)
    weights = np.left_shift(np.uint64(1), np.arange(b - 1, -1, -1, dtype=np.uint64))
    out = np.empty(n, dtype=np.int64)
    block_bytes = _BLOCK * b // 8
    for s in range(0, n, _BLOCK):
        m = min(_BLOCK, n - s)
        first = (s // _BLOCK) * block_bytes
        bits = np.unpackbits(raw[first : first + (m * b + 7) // 8])
        # Only the final block can have padding; it must be zero so each payload has one meaning.
        if bits[m * b :].any():
            raise FormatError(f"corrupt packed tokens: stream {name!r} has non-zero padding bits")
        vals = bits[: m * b].reshape(m, b).astype(np.uint64) @ weights
        out[s : s + m] = vals.astype(np.int64)
    if n and int(out.max()) >= k:
        bad = int(np.argmax(out >= k))
        raise FormatError(
            f"corrupt packed tokens: stream {name!r} element {bad} is {int(out[bad])}, "
            f"outside codebook size {k}"
        )
    return out


# --------------------------------------------------------------------------------------------
# public API


def _check_levels(name: str, levels) -> list[int]:
    try:
        levels = list(levels)
    except TypeError:
        raise VtcodecError(f"stream {name!r}: levels must be a list of ints, got {levels!r}") from None
    if not 1 <= len(levels) <= MAX_LEVELS:
        raise VtcodecError(f"stream {name!r}: need 1..{MAX_LEVELS} levels, got {len(levels)}: {levels!r}")
    for level in levels:
        if isinstance(level, (bool, np.bool_)) or not isinstance(level, (int, np.integer)) or level < 2:
            raise VtcodecError(f"stream {name!r}: every level must be an int >= 2, got {levels!r}")
    levels = [int(x) for x in levels]
    if math.prod(levels) > MAX_K:
        raise VtcodecError(
            f"stream {name!r}: codebook size {math.prod(levels)} (levels {levels}) exceeds 2**32"
        )
    return levels


def pack_streams(
    streams: Mapping[str, tuple], *, level: int = 19, layout: str = "auto"
) -> bytes:
    """Pack named token arrays into one payload (format in the module docstring).

    `streams` maps a name to ``(indices, levels)`` or ``(indices, levels, grid)``: an integer
    array of any shape whose values lie in ``[0, prod(levels))``, and for layout 2 the (T, H, W)
    grid its last dimension is laid out on (default ``(1, 1, last dim)``: left neighbours only).
    `level` is the zstd level (1..22). `layout` is "auto" (try every layout the stream allows
    and keep the smallest), "planes", "bits" or "range" (for measurements).
    Raises VtcodecError for an out-of-range index, a non-integer array, bad levels or a grid
    (or, for "range", levels) layout 2 cannot take.
    """
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 22:
        raise VtcodecError(f"zstd level must be an int in 1..22, got {level!r}")
    if layout != "auto" and layout not in _LAYOUT_NAMES:
        raise VtcodecError(f"layout must be 'auto', 'planes', 'bits' or 'range', got {layout!r}")
    if len(streams) > 255:
        raise VtcodecError(f"at most 255 streams per payload, got {len(streams)}")
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=False, write_content_size=True)
    head = [MAGIC, struct.pack("<B", len(streams))]
    sections, coded = [], []
    range_digits = 0
    for name, item in streams.items():
        if not isinstance(name, str):
            raise VtcodecError(f"stream names must be str, got {name!r}")
        bname = name.encode("utf-8")
        if not 1 <= len(bname) <= 255:
            raise VtcodecError(f"stream name must be 1..255 UTF-8 bytes, got {name!r}")
        if not isinstance(item, tuple) or len(item) not in (2, 3):
            raise VtcodecError(
                f"stream {name!r}: expected (indices, levels) or (indices, levels, grid), got {type(item).__name__}"
            )
        indices, levels = item[:2]
        levels = _check_levels(name, levels)
        k = math.prod(levels)
        arr = np.asarray(indices)
        if arr.dtype.kind not in "iu":
            raise VtcodecError(f"stream {name!r}: indices must be an integer array, got dtype {arr.dtype}")
        if arr.ndim > MAX_NDIM or any(d >= 1 << 32 for d in arr.shape):
            raise VtcodecError(f"stream {name!r}: unsupported shape {arr.shape}")
        flat = arr.reshape(-1)
        if flat.size:
            lo, hi = int(flat.min()), int(flat.max())
            if lo < 0 or hi >= k:
                bad = int(np.argmax((flat < 0) | (flat >= k)))
                raise VtcodecError(
                    f"stream {name!r}: index {int(flat[bad])} at flat position {bad} is outside "
                    f"[0, {k}) for levels {levels}"
                )
        grid = _grid(name, arr, item[2] if len(item) == 3 else None)
        why = entropy.levels_problem(levels) if grid else "the stream is empty or a scalar"
        if not why and range_digits + flat.size * len(levels) > entropy.MAX_SYMBOLS:
            why = f"the payload's range-coded streams would exceed {entropy.MAX_SYMBOLS} digits"
        if layout == "range" and why:
            raise VtcodecError(f"stream {name!r}: layout 'range' impossible: {why}")
        cands = {}
        if layout in ("auto", "planes"):
            cands[LAYOUT_PLANES] = _encode_planes(flat, levels)
        if layout in ("auto", "bits"):
            cands[LAYOUT_BITS] = _encode_bits(flat, k)
        if layout in ("auto", "range") and not why:
            cands[LAYOUT_RANGE] = entropy.encode(flat, levels, grid)
        # Judged alone (a zstd layout compressed on its own): a close proxy for its share of the
        # joint frame. On a tie the lower layout number wins.
        cost = {lay: len(d) + len(_uvarint(len(d))) + sum(len(_uvarint(g)) for g in grid) if lay == LAYOUT_RANGE
                else len(cctx.compress(d)) for lay, d in cands.items()}
        lay = min(cost, key=lambda x: (cost[x], x)) if len(cands) > 1 else next(iter(cands))
        data = cands[lay]
        head.append(struct.pack("<B", len(bname)) + bname + struct.pack("<BB", lay, arr.ndim))
        head.append(b"".join(_uvarint(d) for d in arr.shape))
        head.append(struct.pack("<B", len(levels)) + b"".join(_uvarint(x) for x in levels))
        if lay == LAYOUT_RANGE:
            head.append(b"".join(_uvarint(x) for x in (*grid, len(data))))
            coded.append(data)
            range_digits += flat.size * len(levels)
        else:
            sections.append(data)
    body = b"".join(head) + b"".join(coded)
    if sections or not coded:
        body += cctx.compress(b"".join(sections))
    return body + struct.pack("<I", zlib.crc32(body))


def _grid(name: str, arr: np.ndarray, grid) -> tuple[int, int, int] | None:
    """The layout-2 grid of a stream: given (and checked), or (1, 1, last dim); None for a scalar
    or empty stream, which no layout-2 section holds (it takes a zstd layout)."""
    if grid is not None:
        why = entropy.grid_problem(grid, arr.shape[-1] if arr.ndim else 1)
        if why:
            raise VtcodecError(f"stream {name!r}: {why}")
        grid = tuple(int(g) for g in grid)
    if not arr.ndim or not arr.size:
        return None
    return grid or (1, 1, arr.shape[-1])


class _Desc(NamedTuple):
    """One stream descriptor, as read."""
    name: str
    layout: int
    shape: list[int]
    levels: list[int]
    n: int            # indices
    size: int         # section bytes
    grid: tuple[int, int, int] | None  # layout 2 only


def _read_head(payload: bytes, max_elements: int) -> tuple[int, list[_Desc], _Cursor]:
    """Check the CRC and read the descriptors: (version, descriptors, cursor after them)."""
    buf = memoryview(payload).cast("B")
    if len(buf) < len(MAGIC) + 1 + 4:
        raise FormatError(f"truncated packed tokens: {len(buf)} bytes is shorter than the smallest payload")
    (crc,) = struct.unpack("<I", buf[-4:])
    if zlib.crc32(buf[:-4]) != crc:
        raise FormatError(f"corrupt packed tokens: CRC mismatch over {len(buf)} bytes (truncated or damaged)")
    cur = _Cursor(buf[:-4])
    magic = bytes(cur.take(4, "magic"))
    if magic[:3] != MAGIC[:3]:
        raise FormatError(f"not a packed token payload: magic {magic!r}, expected {MAGIC!r}")
    version = magic[3]
    if version not in READ_VERSIONS:
        raise FormatError(
            f"unsupported packed token version {version} (this vtcodec reads versions "
            f"{', '.join(map(str, READ_VERSIONS))}; a newer vtcodec wrote it?)"
        )
    layouts = (*_ZSTD_LAYOUTS, LAYOUT_RANGE) if version >= 2 else _ZSTD_LAYOUTS
    n_streams = cur.u8("stream count")
    descs = []
    total_elements = coded_digits = 0
    for s in range(n_streams):
        name_len = cur.u8(f"stream {s} name length")
        if name_len == 0:
            raise FormatError(f"corrupt packed tokens: stream {s} has an empty name")
        try:
            name = bytes(cur.take(name_len, f"stream {s} name")).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"corrupt packed tokens: stream {s} name is not UTF-8") from None
        if any(d.name == name for d in descs):
            raise FormatError(f"corrupt packed tokens: duplicate stream name {name!r}")
        lay = cur.u8(f"stream {name!r} layout")
        if lay not in layouts:
            raise FormatError(f"corrupt packed tokens: stream {name!r} has unknown layout {lay}")
        ndim = cur.u8(f"stream {name!r} ndim")
        if ndim > MAX_NDIM:
            raise FormatError(f"corrupt packed tokens: stream {name!r} has ndim {ndim} > {MAX_NDIM}")
        shape = cur.uvarints(ndim, f"stream {name!r} shape")
        n_levels = cur.u8(f"stream {name!r} level count")
        if not 1 <= n_levels <= MAX_LEVELS:
            raise FormatError(f"corrupt packed tokens: stream {name!r} has {n_levels} levels")
        levels = cur.uvarints(n_levels, f"stream {name!r} levels", limit=MAX_K + 1)
        if min(levels) < 2 or math.prod(levels) > MAX_K:
            raise FormatError(f"corrupt packed tokens: stream {name!r} has invalid levels {levels}")
        n = math.prod(shape)
        total_elements += n
        # Python ints: a forged shape cannot overflow this check.
        if total_elements > max_elements:
            raise FormatError(
                f"packed tokens declare {total_elements} indices (stream {name!r} shape {tuple(shape)}), "
                f"more than max_elements={max_elements}"
            )
        grid = None
        if lay == LAYOUT_RANGE:
            coded_digits += n * n_levels
            if coded_digits > entropy.MAX_SYMBOLS:
                raise FormatError(f"packed tokens declare {coded_digits} range-coded digits (stream {name!r}), "
                                  f"more than the {entropy.MAX_SYMBOLS} a reader decodes in one payload")
            grid = tuple(cur.uvarints(3, f"stream {name!r} grid"))
            (size,) = cur.uvarints(1, f"stream {name!r} section length")
            why = ("it is empty or a scalar" if not ndim or not n
                   else entropy.grid_problem(grid, shape[-1]) or entropy.levels_problem(levels))
            if why:
                raise FormatError(f"corrupt packed tokens: stream {name!r} cannot be range coded: {why}")
        else:
            size = _section_size(lay, n, levels)
        descs.append(_Desc(name, lay, shape, levels, n, size, grid))
    return version, descs, cur


def payload_layouts(payload: bytes) -> dict[str, tuple[str, tuple[int, int, int] | None]]:
    """Stream name -> (layout it is stored in: "planes", "bits" or "range"; its layout-2 grid or
    None). Reads the descriptors only."""
    names = {v: k for k, v in _LAYOUT_NAMES.items()}
    return {d.name: (names[d.layout], d.grid) for d in _read_head(payload, 1 << 62)[1]}


def unpack_streams(payload: bytes, *, max_elements: int = MAX_ELEMENTS) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Inverse of pack_streams: name -> (int64 indices with the packed shape, levels).

    `max_elements` bounds the total number of indices over all streams; it is checked, together
    with the zstd frame's declared size, before anything is decompressed. Any malformed,
    truncated or corrupted payload raises FormatError.
    """
    _, descs, cur = _read_head(payload, max_elements)
    ranged = [d for d in descs if d.layout == LAYOUT_RANGE]
    coded = {d.name: cur.take(d.size, f"stream {d.name!r} range-coded section") for d in ranged}
    frame = cur.buf[cur.pos :]
    data = b""
    if len(ranged) < len(descs) or not descs:  # a zstd-layout stream, or none at all: one zstd frame
        data = _decompress_frame(frame, sum(d.size for d in descs if d.layout != LAYOUT_RANGE))
    elif len(frame):
        raise FormatError(f"corrupt packed tokens: {len(frame)} bytes after the range-coded sections")
    view = memoryview(data)
    out: dict[str, tuple[np.ndarray, list[int]]] = {}
    pos = 0
    for d in descs:
        if d.layout == LAYOUT_RANGE:
            flat = entropy.decode(coded[d.name], d.n, d.levels, d.grid)
        else:
            sec = view[pos : pos + d.size]
            pos += d.size
            if d.layout == LAYOUT_PLANES:
                flat = _decode_planes(sec, d.n, d.levels, d.name)
            else:
                flat = _decode_bits(sec, d.n, math.prod(d.levels), d.name)
        out[d.name] = (flat.reshape(d.shape), d.levels)
    return out


def _decompress_frame(frame: memoryview, expected: int) -> bytes:
    """The one zstd frame holding the zstd-layout sections, whose sizes add up to `expected`."""
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as e:
        raise FormatError(f"corrupt packed tokens: bad zstd frame header ({e})") from None
    if params.content_size == zstandard.CONTENTSIZE_UNKNOWN:
        raise FormatError("corrupt packed tokens: zstd frame lacks a content size")
    if expected > MAX_ZSTD_CONTENT:
        raise FormatError(f"corrupt packed tokens: the stream descriptors need {expected} bytes of zstd content, "
                          f"more than the {MAX_ZSTD_CONTENT} a reader inflates")
    if params.content_size != expected:
        raise FormatError(
            f"corrupt packed tokens: zstd frame declares {params.content_size} bytes, "
            f"the stream descriptors need {expected}"
        )
    try:
        dctx = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
        data = dctx.decompress(frame, max_output_size=expected, allow_extra_data=False)
    except zstandard.ZstdError as e:
        raise FormatError(f"corrupt packed tokens: zstd decompression failed ({e})") from None
    if len(data) != expected:
        raise FormatError(f"corrupt packed tokens: decompressed {len(data)} bytes, expected {expected}")
    return data


def entropy_bits(indices: np.ndarray) -> float:
    """Empirical zeroth-order entropy of the values in `indices`, in bits per token (0.0 if empty).

    This is the floor for a coder that treats tokens as independent draws from their own
    histogram (and ignores the cost of sending that histogram).
    """
    arr = np.asarray(indices).reshape(-1)
    if arr.size == 0:
        return 0.0
    _, counts = np.unique(arr, return_counts=True)
    p = counts / arr.size
    return float(max(0.0, -(p * np.log2(p)).sum()))


def packed_bits_per_token(payload_len: int, n_tokens: int) -> float:
    """Bits per token of a payload: 8 * payload_len / n_tokens."""
    if n_tokens <= 0:
        raise VtcodecError(f"n_tokens must be positive, got {n_tokens}")
    return 8.0 * payload_len / n_tokens


# -- version 3: the payloads of one segment, range coded with shared state ------------------------


class SegmentCoder:
    """Packs and unpacks a .vtk file's SHARED and TOKENS payloads, in unit order, as version-3
    payloads (docs/FORMAT.md, "Packed token payload, version 3"):

        0     4    magic b"VTP\x03"
        4     1    u8 n_streams (1..255)
        then n_streams times, stream numbers strictly ascending:
              1    u8 stream number: the stream's place among the header's `stream_levels` names
                   in sorted order (names without a `stream_grids` entry take no number)
              var  uvarint rows >= 1: the stream is (rows, T*H*W) indices, levels and grid (T, H, W)
                   from the header
        rest       one layout-3 range-coded section holding every stream, in order (vtcodec.entropy)

    No CRC: the unit's CRC32 covers the payload. Layout 3 codes each digit against the rounded
    mean of two neighbours and the sign of the same token's digit in the stream's previous payload,
    with tables that carry over from payload to payload: its state (entropy.SegmentState) starts
    afresh at each SEGMENT unit (`start`) and every payload of the segment must be decoded in order,
    as the decoder does anyway from a key chunk. On the 10 colour validation clips, ConvTok at
    quality 0-2, this is about half the token bytes of version 2, whose per-payload descriptors,
    fresh tables and 16 x 16 spatial contexts per digit cost most in chunks of a few hundred tokens.
    Streams the header does not describe, or with levels above entropy.MAX_LEVEL, take version 2
    (`pack_streams`), which needs no state and leaves it untouched."""

    def __init__(self, levels: Mapping[str, list[int]], grids: Mapping[str, tuple[int, int, int]]):
        self.names = sorted(k for k in levels if k in grids)[:255]
        self.number = {k: i for i, k in enumerate(self.names)}
        self.spec = {k: (list(lv), tuple(int(g) for g in grids[k]) if k in grids else None) for k, lv in levels.items()}
        self.state: entropy.SegmentState | None = None

    def start(self) -> None:
        """A SEGMENT unit: the payloads after it code with fresh state."""
        self.state = entropy.SegmentState()

    def _fits(self, streams: Mapping[str, np.ndarray]) -> bool:
        return bool(streams) and all(
            k in self.number and np.ndim(v) == 2 and len(v) >= 1 and np.shape(v)[1] == math.prod(self.spec[k][1])
            and not entropy.levels_problem(self.spec[k][0]) for k, v in streams.items())

    def pack(self, streams: Mapping[str, np.ndarray]) -> bytes:
        """{name: indices (rows, T*H*W)}, streams of the header -> a version-3 payload after
        `start`, or a version-2 one (`pack_streams`) for streams it cannot take."""
        if self.state is None or not self._fits(streams):
            return pack_streams({k: (np.asarray(v), *self.spec[k]) for k, v in streams.items()})
        for k, v in streams.items():
            if np.min(v) < 0 or np.max(v) >= math.prod(self.spec[k][0]):
                raise VtcodecError(f"stream {k!r}: indices outside [0, {math.prod(self.spec[k][0])})")
        order = sorted(streams, key=self.number.get)
        head = bytearray(MAGIC3) + bytes([len(order)])
        for k in order:
            head += bytes([self.number[k]]) + _uvarint(len(streams[k]))
        body = entropy.encode_segment(self.state, [(self.number[k], np.asarray(streams[k]), *self.spec[k])
                                                   for k in order])
        return bytes(head) + body

    def unpack(self, payload: bytes, *, max_elements: int = MAX_ELEMENTS) -> dict[str, tuple[np.ndarray, list[int]]]:
        """Inverse of pack (version 1 and 2 payloads go to unpack_streams): name -> (int64
        indices (rows, T*H*W), levels). FormatError on anything no writer makes."""
        buf = memoryview(payload).cast("B")
        if bytes(buf[:4]) != MAGIC3:
            return unpack_streams(payload, max_elements=max_elements)
        if self.state is None:
            raise FormatError("corrupt packed tokens: a version-3 payload before any SEGMENT unit")
        cur = _Cursor(buf)
        cur.take(4, "magic")
        n = cur.u8("stream count")
        if not n:
            raise FormatError("corrupt packed tokens: a version-3 payload without streams")
        specs, last, total = [], -1, 0
        for _ in range(n):
            sid = cur.u8("stream number")
            if not last < sid < len(self.names):
                raise FormatError(f"corrupt packed tokens: stream number {sid} out of order or not in the header "
                                  f"({len(self.names)} streams)")
            last = sid
            levels, grid = self.spec[self.names[sid]]
            (rows,) = cur.uvarints(1, "row count")
            why = "no rows" if not rows else entropy.levels_problem(levels)
            if why:
                raise FormatError(f"corrupt packed tokens: stream {self.names[sid]!r} cannot be range coded: {why}")
            total += rows * math.prod(grid) * len(levels)
            if total > entropy.MAX_SYMBOLS:
                raise FormatError(f"packed tokens declare {total} range-coded digits, more than a reader decodes "
                                  "in one payload")
            specs.append((sid, rows * math.prod(grid), levels, grid))
        if sum(s[1] for s in specs) > max_elements:
            raise FormatError(f"packed tokens declare {sum(s[1] for s in specs)} indices, more than "
                              f"max_elements={max_elements}")
        flat = entropy.decode_segment(cur.buf[cur.pos:], self.state, specs)
        return {self.names[sid]: (arr.reshape(-1, math.prod(grid)), levels)
                for (sid, _, levels, grid), arr in zip(specs, flat)}
