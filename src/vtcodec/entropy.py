"""Context-adaptive range coding of FSQ token digits: packed-token layout 2.

This docstring is the specification of a layout-2 section (docs/FORMAT.md, "Packed token
payload", carries the same text). `vtcodec.packing` frames the section; this module codes its content.

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


def encode(flat: np.ndarray, levels: list[int], grid: tuple[int, int, int]) -> bytes:
    """Range-code indices (N,) in [0, prod(levels)) under the context model; levels_problem() and
    grid_problem() must pass (the grid's product dividing N)."""
    digits = _digits(np.asarray(flat, dtype=np.int64), levels)
    m = len(levels)
    _, h, w = grid
    row, step, base = w * m, h * w * m, max(levels) + 1
    tables: dict[int, list[int]] = {}
    out = bytearray()
    low, rng, cache, pending, first = 0, _MASK32, 0, 1, True

    def shift_low():
        nonlocal low, cache, pending, first
        if low < 0xFF000000 or low > _MASK32:
            carry = low >> 32
            if first:
                first = False  # the always-zero leading byte is not written
            else:
                out.append((cache + carry) & 0xFF)
            out.extend(bytes([(0xFF + carry) & 0xFF]) * (pending - 1))
            pending, cache = 0, (low >> 24) & 0xFF
        pending += 1
        low = (low & 0x00FFFFFF) << 8

    at = 0
    for t, y, x in _positions(len(digits) // m, grid):
        for i, lv in enumerate(levels):
            c = _context(digits, at, i, t, y, x, m, row, step, base)
            f = tables.get(c)
            if f is None:
                f = tables[c] = [INIT] * lv
            s = digits[at]
            total = sum(f)
            r = rng // total
            low += r * sum(f[:s])
            rng = r * f[s]
            while rng < _TOP:
                rng <<= 8
                shift_low()
            f[s] += INC
            if total + INC > LIMIT:
                f[:] = [(c + 1) >> 1 for c in f]
            at += 1
    low = (low + _TOP - 1) & ~(_TOP - 1)  # inside [low, low + range): range >= 2**24 here
    for _ in range(5):
        shift_low()
    return bytes(out).rstrip(b"\x00")


def decode(data, n: int, levels: list[int], grid: tuple[int, int, int]) -> np.ndarray:
    """Inverse of encode: (N,) int64 indices. Raises FormatError on data no encoder writes."""
    data = bytes(data)
    end = len(data)
    m = len(levels)
    _, h, w = grid
    row, step, base = w * m, h * w * m, max(levels) + 1
    tables: dict[int, list[int]] = {}
    digits = [0] * (n * m)
    code = int.from_bytes(data[:4].ljust(4, b"\x00"), "big")
    pos, rng, at = 4, _MASK32, 0
    for t, y, x in _positions(n, grid):
        for i, lv in enumerate(levels):
            c = _context(digits, at, i, t, y, x, m, row, step, base)
            f = tables.get(c)
            if f is None:
                f = tables[c] = [INIT] * lv
            total = sum(f)
            r = rng // total
            v = code // r
            if v >= total:
                raise FormatError("corrupt packed tokens: range-coded section decodes outside its tables")
            s, cum = 0, 0
            while cum + f[s] <= v:
                cum += f[s]
                s += 1
            code -= r * cum
            rng = r * f[s]
            while rng < _TOP:
                rng <<= 8
                code = (code << 8) | (data[pos] if pos < end else 0)
                pos += 1
            digits[at] = s
            at += 1
            f[s] += INC
            if total + INC > LIMIT:
                f[:] = [(c + 1) >> 1 for c in f]
    if pos < end:
        raise FormatError(f"corrupt packed tokens: range-coded section has {end - pos} bytes past its symbols")
    mult = np.cumprod([1] + list(levels[:-1]), dtype=np.int64)
    return (np.asarray(digits, dtype=np.int64).reshape(n, m) * mult).sum(axis=1)
