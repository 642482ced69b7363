"""Context-adaptive range coding of FSQ token digits: packed-token layouts 2 and 3.

This docstring is the specification of a layout-2 section (docs/FORMAT.md, "Packed token
payload", carries the same text). `vtcodec.packing` frames the section; this module codes its content.
Layout 3 (`encode_segment` / `decode_segment`, specified in docs/FORMAT.md, "Packed token payload,
version 3") uses the same range coder with another model: fewer contexts, a constant flag per
digit, and tables and previous tokens carried from payload to payload through a segment.

What is coded
-------------
A stream of N indices with mixed-radix `levels` (m digits, each level 2..64) and a *grid*
(T, H, W), T*H*W = the stream's last dim: the indices, in C order, form G = N/(T*H*W) groups of T x H x W
(a group is a tile; T is latent time, or any axis along which tokens repeat; H x W the positions
within a step). Each index is split into its digits ``d_i = (index // prod(levels[:i])) %
levels[i]`` and the digits are coded one symbol each: elements in C order, digits 0..m-1 within
an element.

Context of digit i of element (g, t, y, x), "the same digit of a neighbour":

* t > 0: temporal context ``(i, 0, 1 + d_i(g, t-1, y, x), 0)``;
* t = 0: spatial context ``(i, 1, a, b)`` with a = 1 + d_i(g, 0, y, x-1) if x > 0 else 0 and
  b = 1 + d_i(g, 0, y-1, x) if y > 0 else 0.

Every context owns a frequency table of levels[i] integers, all INIT = 2 when the context is
first used. A symbol s is coded with cum = sum(f[:s]), freq = f[s], total = sum(f); then f[s] +=
INC (5), and when the total exceeds LIMIT (2**13) every entry becomes (f + 1) >> 1. Tables start
afresh in every section, so a payload decodes on its own.

Range coder (the carry-propagating byte-wise coder of LZMA, 32-bit range). State: `low`, an
integer of unbounded precision in exact arithmetic (the code value's digits so far), and
`range`, starting at low = 0, range = 2**32 - 1. Coding (cum, freq, total): r = range // total;
low += r * cum; range = r * freq; then while range < 2**24: range <<= 8 and low <<= 8 (one
*shift*; let S be the number of shifts over the whole section). At the end low is rounded up to
a multiple of 2**24 (unchanged if it is one; it stays below low + range, as range >= 2**24 there). The section is
that final low written as a (4 + S)-byte big-endian integer (it is below 2**(32 + 8 S)), with
its trailing zero bytes dropped. (The implementation emits the bytes as it goes, LZMA's way:
with one always-zero byte in front, which it does not write, and holding back a run of 0xFF
bytes until a carry is settled; the result is the same, as tests/test_packing.py checks against
a transcription of this paragraph.)

Decoding mirrors it: code = the first 4 bytes of the section, big-endian, and range = 2**32 - 1;
per symbol r = range // total, v = code // r (v >= total: corrupt), s = the symbol with cum <= v
< cum + freq, code -= r * cum, range = r * freq, and per shift range <<= 8, code = (code << 8) |
the next byte. Bytes past the end of the section read as 0. The decoder thus reads exactly 4 + S
bytes; a section longer than that is corrupt. Any section whose value falls inside the final
interval decodes to the same symbols, so a reader must not demand the writer's exact bytes
(trailing zeros, up to 4 + S bytes in all, or a shorter value inside the interval are accepted).

Why. The tokens of a trained tokenizer repeat along time and are correlated in space, but every
FSQ digit is a small alphabet: measured on the validation split (docs/RESEARCH.md),
a digit coded against the same digit of its temporal neighbour (or of its left and upper
neighbours in the first step) makes each chunk's stream, packed on its own, 13-15 % smaller than
the better zstd layout for RefTok's intra and target, the baseline's latent and TivTok's TIV
tokens, and 2 % smaller for TivTok's TV tokens, which zstd already packed to 2.5 bits. The tables are tiny (at most 65 x 65 + 64 contexts of <= 64 entries per digit),
so they adapt within the few hundred tokens of one chunk. Pure Python: 1.5-2.8 us per digit for
encode + decode together (on the 2-core CPU with another job running), i.e. about
9-17 us per FSQ token of 6 digits.
"""

from __future__ import annotations

import math

import numpy as np

from vtcodec.errors import FormatError

__all__ = ["MAX_LEVEL", "MAX_SYMBOLS", "split_digits", "levels_problem", "grid_problem", "encode", "decode"]

MAX_LEVEL = 64           # a digit's level, for layout 2
MAX_SYMBOLS = 1 << 24    # range-coded digits per payload a reader will decode (bounds a forged payload's cost)
INIT, INC, LIMIT = 2, 5, 1 << 13
_TOP, _MASK32 = 1 << 24, (1 << 32) - 1


def split_digits(indices: np.ndarray, levels: list[int]) -> list[np.ndarray]:
    """Mixed-radix digits of int64 indices, digit 0 (the least significant) first:
    d_i = (index // prod(levels[:i])) % levels[i], each an array shaped like `indices`."""
    cols, div = [], 1
    for lv in levels:
        cols.append((indices // div) % lv)
        div *= lv
    return cols


def _digits(flat: np.ndarray, levels: list[int]) -> list[int]:
    """(N,) indices -> their N * m digits, element after element (digit 0 first), as Python ints."""
    return np.stack(split_digits(flat, levels), axis=1).ravel().tolist()


def _context(digits: list[int], at: int, i: int, t: int, y: int, x: int, m: int, row: int, step: int,
             base: int) -> int:
    """Table number of digit i at flat position `at` of `digits` (see the module docstring): the
    left, upper and previous-step neighbours' digit i lie m, row = W*m and step = H*W*m places
    back; base = max level + 1."""
    if t:
        return ((i * 2) * base + 1 + digits[at - step]) * base
    a = 1 + digits[at - m] if x else 0
    b = 1 + digits[at - row] if y else 0
    return ((i * 2 + 1) * base + a) * base + b


def _positions(n: int, grid: tuple[int, int, int]):
    """(t, y, x) of each element in C order."""
    t_, h, w = grid
    for _ in range(n // (t_ * h * w)):
        for t in range(t_):
            for y in range(h):
                for x in range(w):
                    yield t, y, x


def grid_problem(grid, last: int | None = None) -> str | None:
    """Why `grid` is not three positive ints (whose product is `last`, if given), or None."""
    try:
        ints = len(grid) == 3 and all(
            isinstance(g, (int, np.integer)) and not isinstance(g, (bool, np.bool_)) for g in grid)
    except TypeError:
        ints = False
    if not ints or min(grid) < 1:
        return f"grid {grid!r} is not three positive ints"
    if last is not None and math.prod(int(g) for g in grid) != last:
        return f"grid {tuple(int(g) for g in grid)} does not multiply to the last dim, {last}"
    return None


def levels_problem(levels: list[int]) -> str | None:
    """Why digits of these levels cannot be range coded, or None. (How many digits a payload may
    hold, MAX_SYMBOLS, is counted by vtcodec.packing over all of a payload's streams.)"""
    return f"levels {levels} exceed {MAX_LEVEL}" if max(levels) > MAX_LEVEL else None


class _Encoder:
    """The range coder of the module docstring, encoding side (LZMA's byte-wise carry handling)."""

    def __init__(self):
        self.out = bytearray()
        self.low, self.rng, self.cache, self.pending, self.first = 0, _MASK32, 0, 1, True

    def _shift_low(self):
        low = self.low
        if low < 0xFF000000 or low > _MASK32:
            carry = low >> 32
            if self.first:
                self.first = False  # the always-zero leading byte is not written
            else:
                self.out.append((self.cache + carry) & 0xFF)
            self.out.extend(bytes([(0xFF + carry) & 0xFF]) * (self.pending - 1))
            self.pending, self.cache = 0, (low >> 24) & 0xFF
        self.pending += 1
        self.low = (low & 0x00FFFFFF) << 8

    def adaptive(self, f: list[int], s: int, inc: int) -> None:
        """Code symbol s with table f, then adapt f (INC-style update, halving past LIMIT)."""
        total = sum(f)
        r = self.rng // total
        self.low += r * sum(f[:s])
        self.rng = r * f[s]
        while self.rng < _TOP:
            self.rng <<= 8
            self._shift_low()
        f[s] += inc
        if total + inc > LIMIT:
            f[:] = [(c + 1) >> 1 for c in f]

    def finish(self) -> bytes:
        self.low = (self.low + _TOP - 1) & ~(_TOP - 1)  # inside [low, low + range): range >= 2**24 here
        for _ in range(5):
            self._shift_low()
        return bytes(self.out).rstrip(b"\x00")


class _Decoder:
    """Decoding side: reads exactly the bytes the encoder's shifts produced (past the end: zeros)."""

    def __init__(self, data):
        self.data = bytes(data)
        self.end = len(self.data)
        self.code_ = int.from_bytes(self.data[:4].ljust(4, b"\x00"), "big")
        self.pos, self.rng = 4, _MASK32

    def adaptive(self, f: list[int], inc: int) -> int:
        """Decode one symbol with table f, then adapt f as the encoder did."""
        total = sum(f)
        r = self.rng // total
        v = self.code_ // r
        if v >= total:
            raise FormatError("corrupt packed tokens: range-coded section decodes outside its tables")
        s, cum = 0, 0
        while cum + f[s] <= v:
            cum += f[s]
            s += 1
        self.code_ -= r * cum
        self.rng = r * f[s]
        while self.rng < _TOP:
            self.rng <<= 8
            self.code_ = (self.code_ << 8) | (self.data[self.pos] if self.pos < self.end else 0)
            self.pos += 1
        f[s] += inc
        if total + inc > LIMIT:
            f[:] = [(c + 1) >> 1 for c in f]
        return s

    def check_end(self) -> None:
        if self.pos < self.end:
            raise FormatError(f"corrupt packed tokens: range-coded section has {self.end - self.pos} bytes past its symbols")


def encode(flat: np.ndarray, levels: list[int], grid: tuple[int, int, int]) -> bytes:
    """Range-code indices (N,) in [0, prod(levels)) under the context model; levels_problem() and
    grid_problem() must pass (the grid's product dividing N)."""
    digits = _digits(np.asarray(flat, dtype=np.int64), levels)
    m = len(levels)
    _, h, w = grid
    row, step, base = w * m, h * w * m, max(levels) + 1
    tables: dict[int, list[int]] = {}
    enc = _Encoder()
    at = 0
    for t, y, x in _positions(len(digits) // m, grid):
        for i, lv in enumerate(levels):
            c = _context(digits, at, i, t, y, x, m, row, step, base)
            f = tables.get(c)
            if f is None:
                f = tables[c] = [INIT] * lv
            enc.adaptive(f, digits[at], INC)
            at += 1
    return enc.finish()


def decode(data, n: int, levels: list[int], grid: tuple[int, int, int]) -> np.ndarray:
    """Inverse of encode: (N,) int64 indices. Raises FormatError on data no encoder writes."""
    m = len(levels)
    _, h, w = grid
    row, step, base = w * m, h * w * m, max(levels) + 1
    tables: dict[int, list[int]] = {}
    digits = [0] * (n * m)
    dec = _Decoder(data)
    at = 0
    for t, y, x in _positions(n, grid):
        for i, lv in enumerate(levels):
            c = _context(digits, at, i, t, y, x, m, row, step, base)
            f = tables.get(c)
            if f is None:
                f = tables[c] = [INIT] * lv
            digits[at] = dec.adaptive(f, INC)
            at += 1
    dec.check_end()
    mult = np.cumprod([1] + list(levels[:-1]), dtype=np.int64)
    return (np.asarray(digits, dtype=np.int64).reshape(n, m) * mult).sum(axis=1)


# -- layout 3: the payloads of one segment, coded with shared state ------------------------------
INIT3, INC3 = 1, 4
_NO_PREV = 3


class SegmentState:
    """What layout 3 carries from one payload to the next within a segment (a key chunk resets
    it): the adaptive tables by context, and each stream's digits as last coded."""

    def __init__(self):
        self.tables: dict[tuple, list[int]] = {}
        self.last: dict[int, tuple[tuple, list[list[int]]]] = {}


def _code_plane(coder, decoding: bool, tables: dict, key: tuple, d: list[int], lv: int, grid, prev) -> None:
    """Code (or, decoding, fill in) one digit plane d in C order of (rows, T, H, W). Context:
    the rounded mean of two neighbours (left and upper in the first step; left and the previous
    step's digit after it) and the sign of the same element's digit in the stream's last coding
    (`prev`, or 3 when there is none) relative to the middle level."""
    t_, h, w = grid
    hw, mid = h * w, lv // 2
    e = 0
    for _ in range(len(d) // (t_ * hw)):
        for t in range(t_):
            for y in range(h):
                for x in range(w):
                    a = d[e - 1] if x else (d[e - w] if y else mid)
                    b = d[e - hw] if t else (d[e - w] if y else a)
                    p = _NO_PREV if prev is None else (0 if prev[e] < mid else 1 if prev[e] == mid else 2)
                    k = (*key, (a + b + 1) >> 1, p)
                    f = tables.get(k)
                    if f is None:
                        f = tables[k] = [INIT3] * lv
                    if decoding:
                        d[e] = coder.adaptive(f, INC3)
                    else:
                        coder.adaptive(f, d[e], INC3)
                    e += 1


def _code_stream(coder, decoding: bool, state: SegmentState, sid: int, planes: list[list[int]], levels, grid):
    shape = (len(planes[0]), tuple(grid))
    last = state.last.get(sid)
    prev = last[1] if last is not None and last[0] == shape else None
    tables = state.tables
    for i, lv in enumerate(levels):
        d = planes[i]
        flag = tables.get((sid, i, "const")) or tables.setdefault((sid, i, "const"), [INIT3] * 2)
        value = tables.get((sid, i, "value")) or tables.setdefault((sid, i, "value"), [INIT3] * lv)
        if decoding:
            const = coder.adaptive(flag, INC3)
            if const:
                d[:] = [coder.adaptive(value, INC3)] * len(d)
        else:
            const = int(min(d) == max(d))
            coder.adaptive(flag, const, INC3)
            if const:
                coder.adaptive(value, d[0], INC3)
        if not const:
            _code_plane(coder, decoding, tables, (sid, i), d, lv, grid, None if prev is None else prev[i])
    state.last[sid] = (shape, planes)


def encode_segment(state: SegmentState, streams: list[tuple[int, np.ndarray, list[int], tuple[int, int, int]]]) -> bytes:
    """Layout 3: range-code streams [(stream number, indices (N,), levels, grid)] as one section,
    with and into the segment's `state` (levels_problem() and grid_problem() must pass)."""
    enc = _Encoder()
    for sid, flat, levels, grid in streams:
        planes = [p.tolist() for p in split_digits(np.asarray(flat, dtype=np.int64).ravel(), levels)]
        _code_stream(enc, False, state, sid, planes, levels, grid)
    return enc.finish()


def decode_segment(data, state: SegmentState, streams: list[tuple[int, int, list[int], tuple[int, int, int]]]) -> list[np.ndarray]:
    """Inverse of encode_segment for [(stream number, N, levels, grid)]: each stream's (N,) int64
    indices. Raises FormatError on data no encoder writes."""
    dec = _Decoder(data)
    out = []
    for sid, n, levels, grid in streams:
        planes = [[0] * n for _ in levels]
        _code_stream(dec, True, state, sid, planes, levels, grid)
        mult = np.cumprod([1] + list(levels[:-1]), dtype=np.int64)
        out.append((np.asarray(planes, dtype=np.int64).reshape(len(levels), n) * mult[:, None]).sum(axis=0))
    dec.check_end()
    return out
