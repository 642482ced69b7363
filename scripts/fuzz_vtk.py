"""Structure-aware fuzzing of the `.vtk` readers: crafted files must be refused, never crash.

    python scripts/fuzz_vtk.py --cases 100000 --jobs 2 [--seed 0] [--save DIR]

A `.vtk` is untrusted input (issue 23). Random damage is caught by the CRCs, so the cases here are
made the way an attacker makes them: valid seed files (the codec golden files, every arch and
format version 1-4, with partial refreshes, plus tests/fuzz_corpus/*.vtk) are parsed into their
structure, one thing is changed, and every CRC is recomputed. Mutation kinds:

  header   a header field set to a hostile value (huge, negative, non-finite, wrong type, deep)
  rawjson  the header's JSON text itself: deep nesting, 1e400, duplicate keys, long numbers
  crafted  a header built from scratch out of plausible keys with extreme values
  index    an index entry field (offset, chunk, first_frame, n_frames, flags)
  units    units or chunks dropped, duplicated or reordered (index rebuilt to match)
  swap     payloads swapped between units, or taken from another seed file
  packed   a packed-token payload re-packed with other shapes, names, levels; or its descriptor
           bytes changed with the payload CRC fixed
  bomb     a packed payload that declares far more tokens or zstd content than it holds
  raw      bytes flipped or the file truncated, CRCs left alone (the baseline)

Each case runs one target: `decode` (iter_decode with the seed's tiny model), `info` and `tokens`
(the CLI, in-process), `read_tokens` (the library). The outcome is ok, refused (a one-line
VtcodecError) or a failure: any other exception, a decode whose frames are not the header's
(frame_count, height, width, 3), a case over the time limit, or one over the memory limit. The
long run forks a child per case, so a hang is killed and the child's peak memory measured;
the in-suite run (tests/test_fuzz.py) runs cases in-process with a time limit. Every failure is
printed by its signature (target, exception, innermost vtcodec frame); `--save` keeps one
reproducer per signature: copy it into tests/fuzz_corpus/regress/ once fixed.

Reading uses FUZZ_LIMITS (pictures up to 192x192), as a batch job would with VTCODEC_MAX_PIXELS,
so a legitimately large picture declared by a mutated header is refused rather than decoded for
minutes; the default limits are tested by tests/test_fuzz.py's fixed cases.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "codec"
CORPUS = ROOT / "tests" / "fuzz_corpus"

from vtcodec import limits as vlimits  # noqa: E402
from vtcodec.container import END_MAGIC, INDEX, MAGIC, SEGMENT, SHARED, TOKENS, VtkReader, pack_header  # noqa: E402
from vtcodec.wire import uvarint  # noqa: E402
from vtcodec.errors import VtcodecError  # noqa: E402

# a batch job's limits: small pictures and chunks (the seeds are 72x40, chunks of 8), so the work a
# valid-looking header can ask for (tiles x tokens per unit) stays within the case's time limit
FUZZ_LIMITS = vlimits.Limits(max_pixels=192 * 192, max_side=2048, max_frames=4096, max_chunk_frames=16, max_tiles=64)
KINDS = ("header", "rawjson", "crafted", "index", "units", "swap", "packed", "bomb", "raw")
TARGETS = ("decode", "info", "tokens", "read_tokens")
TIME_LIMIT_S = 10.0
MEMORY_LIMIT = 1 << 30


# ------------------------------------------------------------------------------------ file model

@dataclass
class Chunk:
    chunk: int
    first: int
    n: int
    flags: int
    units: list[list] = field(default_factory=list)  # [type, payload]


@dataclass
class Model:
    version: int
    header: dict
    chunks: list[Chunk]
    text: bytes | None = None  # header JSON text overriding `header` (raw mutations)


def parse(data: bytes) -> Model:
    """A valid file's structure (trusting: seeds only)."""
    version, hlen = struct.unpack_from("<HI", data, 8)
    blob = data[14:14 + hlen]
    if version >= 3:
        blob = zlib.decompressobj(-15, zdict=_dict()).decompress(blob)
    header = json.loads(blob)
    (index_offset,) = struct.unpack_from("<Q", data, len(data) - 20)
    with VtkReader(io.BytesIO(data)) as r:
        entries = [(e.offset, e.chunk, e.first_frame, e.n_frames, int(e.key)) for e in r.index]
    n = len(entries)
    chunks = []
    for i, (off, c, first, nf, flags) in enumerate(entries):
        end = entries[i + 1][0] if i + 1 < n else index_offset
        ch = Chunk(c, first, nf, flags)
        pos = off
        while pos < end:
            t, ln = struct.unpack_from("<BI", data, pos)
            ch.units.append([t, data[pos + 5: pos + 5 + ln]])
            pos += 9 + ln
        chunks.append(ch)
    return Model(version, header, chunks)


def _dict() -> bytes:
    from vtcodec.container import HEADER_DICT
    return HEADER_DICT


def unit(t: int, payload: bytes) -> bytes:
    head = struct.pack("<BI", t, len(payload))
    return head + payload + struct.pack("<I", zlib.crc32(head + payload))


def emit(m: Model, tamper=None) -> bytes:
    """The file for a model, every offset and CRC recomputed; `tamper(entries)` may change the
    index entries ([offset, chunk, first, n, flags] lists) after the offsets are known."""
    text = m.text if m.text is not None else json.dumps(m.header, sort_keys=True, separators=(",", ":")).encode()
    blob = pack_header(text) if m.version >= 3 else text
    pre = MAGIC + struct.pack("<HI", m.version, len(blob)) + blob
    out = bytearray(pre + struct.pack("<I", zlib.crc32(pre)))
    entries = []
    for c in m.chunks:
        entries.append([len(out), c.chunk, c.first, c.n, c.flags])
        for t, p in c.units:
            out += unit(t, p)
    if tamper:
        tamper(entries)
    index_offset = len(out)
    if m.version >= 4:  # varint steps (docs/FORMAT.md): first_frame and flag bits above 0 are not stored
        payload, prev, wrap = bytearray(uvarint(len(entries))), None, 1 << 35
        for off, c, _, nf, flags in entries:
            if prev:
                payload += uvarint((off - prev[0]) % wrap)
            payload += uvarint((c - (prev[1] + 1 if prev else 0)) % wrap) + uvarint((nf << 1 | flags & 1) % wrap)
            prev = (off, c)
    else:
        payload = struct.pack("<I", len(entries)) + b"".join(
            struct.pack("<QIQIB", *(v % (1 << b) for v, b in zip(e, (64, 32, 64, 32, 8)))) for e in entries)
    out += unit(INDEX, payload)
    off = struct.pack("<Q", index_offset)
    return bytes(out + off + struct.pack("<I", zlib.crc32(off)) + END_MAGIC)


def clone(m: Model) -> Model:
    return Model(m.version, json.loads(json.dumps(m.header)),
                 [Chunk(c.chunk, c.first, c.n, c.flags, [list(u) for u in c.units]) for c in m.chunks], m.text)


def renumber(m: Model) -> None:
    """Make chunk numbers and frame ranges consistent again, and frame_count their sum."""
    first = 0
    for i, c in enumerate(m.chunks):
        c.chunk, c.first = i, first
        first += c.n
    m.header["frame_count"] = first


# ---------------------------------------------------------------------------- packed payloads

def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def payload(streams: list[tuple], tail: bytes, version: int = 2) -> bytes:
    """A packed payload from raw descriptors (name, layout, shape, levels[, grid, section]) and the
    bytes after them (sections / zstd frame); CRC appended."""
    out = bytearray(b"VTP" + bytes([version]) + bytes([len(streams)]))
    for s in streams:
        name, lay, shape, levels = s[:4]
        nb = name.encode()
        out += bytes([len(nb)]) + nb + bytes([lay, len(shape)]) + b"".join(uvarint(d) for d in shape)
        out += bytes([len(levels)]) + b"".join(uvarint(v) for v in levels)
        if lay == 2:
            grid, sec = s[4], s[5]
            out += b"".join(uvarint(g) for g in grid) + uvarint(sec)
    out += tail
    return bytes(out + struct.pack("<I", zlib.crc32(out)))


def zstd_frame(content_size: int, real: int | None = None) -> bytes:
    """A zstd frame of zeros declaring `content_size`; `real` zeros actually inside (the
    declared size patched in the frame header when they differ)."""
    n = real if real is not None else content_size
    c = zstandard.ZstdCompressor(level=1, write_content_size=True).compressobj(size=n)
    zeros = bytes(min(n, 1 << 24))
    parts = []
    for at in range(0, n, len(zeros) or 1):  # streamed: a 2 GiB frame of zeros is 65 kB
        parts.append(c.compress(zeros[: min(len(zeros), n - at)]))
    frame = b"".join(parts) + c.flush()
    if real is not None and real != content_size:
        frame = _patch_fcs(frame, content_size)
    return frame


def _patch_fcs(frame: bytes, size: int) -> bytes:
    fhd = frame[4]
    fcs_code, single = fhd >> 6, (fhd >> 5) & 1
    did = (0, 1, 2, 4)[fhd & 3]
    pos = 5 + (0 if single else 1) + did
    width = (1 if single else 0, 2, 4, 8)[fcs_code]
    if width == 0:
        return frame
    value = size - 256 if width == 2 else size
    value = max(0, min(value, (1 << (8 * width)) - 1))
    return frame[:pos] + value.to_bytes(width, "little") + frame[pos + width:]


def bomb(rng: random.Random, names: list[str]) -> bytes:
    name = rng.choice(names + ["x"])
    kind = rng.randrange(5)
    if kind == 0:  # honest frame, huge declared content
        n = rng.choice([1 << 20, 1 << 24, 1 << 26, (1 << 31) // 6])
        return payload([(name, 0, [1, n], [8, 8, 8, 5, 5, 5])], zstd_frame(min(n * 6, 1 << 27)) if n * 6 <= 1 << 27
                       else zstd_frame(n * 6, real=1 << 16))
    if kind == 1:  # declared size smaller than what the frame expands to
        n = rng.choice([4, 64, 1024])
        return payload([(name, 0, [1, n], [8])], zstd_frame(n, real=n * rng.choice([2, 1000, 1 << 16])))
    if kind == 2:  # range coded: a few bytes declaring millions of digits
        t = rng.choice([16, 256, 4096])
        hw = rng.choice([16, 64, 256])
        rows = rng.choice([1, 64, 10 ** 4])
        return payload([(name, 2, [rows, t * hw * hw], [8, 8, 8, 5, 5, 5], (t, hw, hw), 2)], b"\x00\x01")
    if kind == 3:  # fixed-width bits, 2**32 levels, rows of 10**7 tiles
        return payload([(name, 1, [10 ** 7, 1], [1 << 16, 1 << 16])], zstd_frame(4 * 10 ** 7, real=1 << 12))
    return payload([(name, 0, [rng.choice([0, 1, 2 ** 32 - 1]), rng.choice([0, 7, 2 ** 31])], [2])], zstd_frame(0))


def repack(rng: random.Random, p: bytes) -> bytes:
    """A packed payload re-packed after changing its arrays (shape, names, levels, values)."""
    from vtcodec.packing import pack_streams, unpack_streams

    try:
        streams = unpack_streams(p)
    except VtcodecError:
        return p
    if not streams:
        return p
    out = {k: (v, lv) for k, (v, lv) in streams.items()}
    name = rng.choice(sorted(out))
    arr, lv = out[name]
    op = rng.randrange(9)
    if op == 0 and arr.ndim >= 1:
        arr = np.concatenate([arr, arr[:1]]) if rng.random() < 0.5 else arr[:-1]
    elif op == 1 and arr.ndim == 2:
        arr = arr[:, :max(arr.shape[1] - rng.choice([1, 2, 7]), 0)] if rng.random() < 0.5 else \
            np.concatenate([arr, arr[:, :3]], axis=1)
    elif op == 2:
        arr = arr.reshape(-1)
    elif op == 3:
        out[name + "x" if rng.random() < 0.5 else "refresh_tiles"] = out.pop(name)
        return pack_streams({k: (v, lvl) for k, (v, lvl) in out.items()}, layout="auto")
    elif op == 4 and len(out) > 1:
        out.pop(name)
        return pack_streams({k: (v, lvl) for k, (v, lvl) in out.items()})
    elif op == 5:
        out[rng.choice(["tiv", "tv", "intra", "target", "latent", "refresh_tiles"])] = (
            np.zeros(rng.choice([(1,), (2, 3), (1, 64), (3, 16)]), dtype=np.int64), [rng.choice([2, 5, 64, 1000])])
        return pack_streams({k: (v, lvl) for k, (v, lvl) in out.items()})
    elif op == 6:
        lv = [rng.choice([2, 3, 8, 256, 1 << 16])] + list(lv[1:])
        arr = arr % int(np.prod(lv))
    elif op == 7 and name == "refresh_tiles":
        arr = np.array(rng.choice([[0, 0], [5, 1], [1 << 20], [0, 1, 2, 3, 4, 5]]))
    else:
        arr = np.full_like(arr, rng.randrange(int(np.prod(lv))))
    out[name] = (arr, lv)
    try:
        return pack_streams({k: (v, lvl) for k, (v, lvl) in out.items()})
    except VtcodecError:
        return p


def flip_in_payload(rng: random.Random, p: bytes) -> bytes:
    """Change bytes in a packed payload's body (descriptors mostly) and fix its CRC."""
    if len(p) < 9:
        return p
    b = bytearray(p[:-4])
    for _ in range(rng.choice([1, 1, 2, 4])):
        i = min(int(rng.expovariate(1 / 12)), len(b) - 1) if rng.random() < 0.7 else rng.randrange(len(b))
        b[i] = rng.choice([0, 1, 2, 0x7F, 0x80, 0xFF, rng.randrange(256), b[i] ^ (1 << rng.randrange(8))])
    return bytes(b) + struct.pack("<I", zlib.crc32(b))


# ------------------------------------------------------------------------------------ mutations

HOSTILE = [0, -1, 1, 2, 3, 7, 63, 64, 65, 127, 4096, 65536, 10 ** 7, 2 ** 31, 2 ** 32, 2 ** 63, 2 ** 64, -(2 ** 63),
           1e30, -1e30, 0.5, 1.0, True, False, None, "", "x", "64", "1/0", "0/1", "30000/1001", [], {}, [1], [0, 0, 0],
           [64, 64, 64], {"a": 1}, "a" * 10 ** 4, [[[[[[[[[[[]]]]]]]]]]]]


def mutate_header(rng, m: Model, seeds) -> bytes:
    h = m.header
    key = rng.choice(sorted(h) + ["tiles", "tile", "width", "height", "frame_count", "chunk_frames", "new"])
    target = h
    if isinstance(h.get(key), dict) and h[key] and rng.random() < 0.6:  # nested: stream_grids / levels
        target = h[key]
        key = rng.choice(sorted(target))
        if isinstance(target[key], list) and target[key] and rng.random() < 0.6:
            lst = target[key]
            lst[rng.randrange(len(lst))] = rng.choice(HOSTILE)
            return emit(m)
    elif isinstance(h.get(key), list) and h[key] and rng.random() < 0.5:
        h[key][rng.randrange(len(h[key]))] = rng.choice(HOSTILE)
        return emit(m)
    if rng.random() < 0.2:
        target.pop(key, None)
    else:
        target[key] = rng.choice(HOSTILE)
    if rng.random() < 0.3:  # keep the picture consistent so the cross-checks are not the only guard
        _resize(rng, h)
    return emit(m)


def _resize(rng, h: dict) -> None:
    w, hh = rng.choice([(4096, 4096), (1 << 15, 1), (192, 192), (200, 100), (10 ** 6, 10 ** 6), (46341, 46341)])
    h["width"], h["height"] = w, hh
    tile = h.get("tile") if isinstance(h.get("tile"), int) and not isinstance(h.get("tile"), bool) else 64
    ov = h.get("overlap") if isinstance(h.get("overlap"), int) and not isinstance(h.get("overlap"), bool) else 0
    if 8 <= tile and 0 <= ov < tile // 2:
        h["tiles"] = vlimits.tile_count(hh, w, tile, ov)
        h["pad_box"] = [0, 0, max(hh, tile), max(w, tile)]


def mutate_rawjson(rng, m: Model, seeds) -> bytes:
    text = json.dumps(m.header, sort_keys=True, separators=(",", ":"))
    key = rng.choice(["width", "height", "frame_count", "tiles", "tile", "chunk_frames", "overlap"])
    choice = rng.randrange(8)
    if choice == 0:
        depth = rng.choice([20, 1000, 100000])
        text = text[:-1] + ',"deep":' + "[" * depth + "]" * depth + "}"
    elif choice == 1:
        text = text.replace(f'"{key}":', f'"{key}":1e400,"_{key}":', 1)
    elif choice == 2:
        text = text[:-1] + f',"{key}":{rng.choice([0, 1, 10 ** 9])}' + "}"
    elif choice == 3:
        text = text.replace(f'"{key}":', f'"{key}":{"9" * rng.choice([20, 5000])},"_{key}":', 1)
    elif choice == 4:
        text = text.replace(f'"{key}":', f'"{key}":-0.0,"_{key}":', 1)
    elif choice == 5:
        text = rng.choice(["[]", "null", "1", '"x"', "{}", "{" * 50, text[: rng.randrange(len(text))]])
    elif choice == 6:
        text = text[:-1] + ',"stream_grids":{' + ",".join(f'"s{i}":[1,1,1]' for i in range(rng.choice([20, 5000]))) + "}}"
    else:
        text = text.replace(f'"{key}":', f'"{key}":NaN,"_{key}":', 1)
    m.text = text.encode()
    return emit(m)


def mutate_crafted(rng, m: Model, seeds) -> bytes:
    h = m.header
    for key in rng.sample(sorted(h), k=rng.randrange(1, 4)):
        h[key] = rng.choice(HOSTILE)
    _resize(rng, h)
    if rng.random() < 0.5:
        h["stream_grids"] = {k: [rng.choice([1, 2, 16, 4096]) for _ in range(3)] 
                             for k in (h["stream_levels"] if isinstance(h.get("stream_levels"), dict) else {"a": 0})}
    return emit(m)


def mutate_index(rng, m: Model, seeds) -> bytes:
    if not m.chunks:
        return emit(m)
    i = rng.randrange(len(m.chunks))
    f = rng.randrange(5)
    value = rng.choice([0, 1, 2, 3, 4, 7, 8, 9, 12, 2 ** 31, 2 ** 32 - 1, 2 ** 63, 2 ** 64 - 1, rng.randrange(1 << 16)])

    def tamper(entries):
        entries[i][f] = value if f != 4 else rng.choice([0, 1, 2, 3, 0x80, 0xFF])
    if rng.random() < 0.3 and f == 3:  # a consistent lie: frame counts follow
        m.chunks[i].n = value
        renumber(m)
        return emit(m)
    return emit(m, tamper)


def mutate_units(rng, m: Model, seeds) -> bytes:
    op = rng.randrange(7)
    if not m.chunks:
        return emit(m)
    if op == 6:  # no chunks at all: a valid empty video, or one whose header still counts frames
        m.chunks = []
        if rng.random() < 0.7:
            m.header["frame_count"] = 0
        return emit(m)
    c = rng.choice(m.chunks)
    if op == 0 and c.units:
        c.units.pop(rng.randrange(len(c.units)))
        if not c.units:
            m.chunks.remove(c)
    elif op == 1 and c.units:
        c.units.insert(rng.randrange(len(c.units) + 1), list(rng.choice(c.units)))
    elif op == 2:
        rng.shuffle(c.units)
    elif op == 3:
        m.chunks.insert(rng.randrange(len(m.chunks) + 1), clone(Model(0, {}, [c])).chunks[0])
    elif op == 4:
        rng.shuffle(m.chunks)
    else:
        m.chunks.remove(c)
    if rng.random() < 0.8:
        renumber(m)
    if rng.random() < 0.5 and m.chunks:  # key flags follow the SEGMENT units
        for ch in m.chunks:
            ch.flags = int(bool(ch.units) and ch.units[0][0] == SEGMENT)
    return emit(m)


def mutate_swap(rng, m: Model, seeds) -> bytes:
    all_units = [u for c in m.chunks for u in c.units if u[0] in (SHARED, TOKENS)]
    if not all_units:
        return emit(m)
    u = rng.choice(all_units)
    if rng.random() < 0.5:
        other = rng.choice(all_units)
        u[1], other[1] = other[1], u[1]
    else:
        donor = rng.choice(seeds)
        pool = [x for c in donor.chunks for x in c.units if x[0] in (SHARED, TOKENS, SEGMENT)]
        if pool:
            u[1] = rng.choice(pool)[1]
    return emit(m)


def mutate_packed(rng, m: Model, seeds) -> bytes:
    all_units = [u for c in m.chunks for u in c.units]
    if not all_units:
        return emit(m)
    u = rng.choice(all_units)
    if u[0] == SEGMENT:
        u[1] = rng.choice([b"", b"{}", b'{"chunk":1,"first_frame":0}', b"[" * 10000, u[1] + b" "])
    elif rng.random() < 0.5:
        u[1] = repack(rng, u[1])
    else:
        u[1] = flip_in_payload(rng, u[1])
    return emit(m)


def mutate_bomb(rng, m: Model, seeds) -> bytes:
    all_units = [u for c in m.chunks for u in c.units if u[0] in (SHARED, TOKENS)]
    if not all_units:
        return emit(m)
    names = sorted(m.header.get("stream_levels", {}))
    rng.choice(all_units)[1] = bomb(rng, names)
    return emit(m)


def mutate_raw(rng, m: Model, seeds) -> bytes:
    data = bytearray(emit(m))
    if rng.random() < 0.5:
        return bytes(data[: rng.randrange(len(data))])
    for _ in range(rng.choice([1, 2, 8])):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    return bytes(data)


MUTATORS = {k: globals()[f"mutate_{k}"] for k in KINDS}


# ------------------------------------------------------------------------------- running targets

@dataclass
class Seeds:
    models: list[Model]
    names: list[str]
    tokenizers: dict  # arch -> Tokenizer


def load_seeds() -> Seeds:
    import torch

    from vtcodec.models.registry import load_checkpoint

    import rich.console  # noqa: F401 - imported once here, not in every forked case
    import rich.table  # noqa: F401

    import vtcodec.cli  # noqa: F401
    import vtcodec.codec  # noqa: F401
    import vtcodec.report  # noqa: F401
    import vtcodec.tokens  # noqa: F401

    paths = sorted(GOLDEN.glob("*.vtk")) + sorted(CORPUS.glob("*.vtk"))
    models = [parse(p.read_bytes()) for p in paths]
    torch.set_num_threads(1)
    toks = {}
    for p in sorted(GOLDEN.glob("*.safetensors")):
        toks[p.stem] = tok = load_checkpoint(p)
        tok.key, tok.sha256 = p.stem, ""  # as load_tokenizer names it
    return Seeds(models, [p.name for p in paths], toks)


def make_case(rng: random.Random, seeds: Seeds, kind: str | None = None) -> tuple[str, bytes]:
    kind = kind or rng.choice(KINDS)
    for _ in range(10):  # a mutation that does not apply to this seed (the harness's limits) draws again
        m = clone(rng.choice(seeds.models))
        try:
            return kind, MUTATORS[kind](rng, m, seeds.models)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError, struct.error):
            continue
    return kind, emit(clone(rng.choice(seeds.models)))


def run_target(target: str, path: Path, seeds: Seeds, work: Path) -> str:
    """'ok' or 'refused'; anything else raises (a failure) or is reported by the caller."""
    from vtcodec.cli import main
    from vtcodec.codec import iter_decode
    from vtcodec.container import VtkReader
    from vtcodec.tokens import read_tokens

    try:
        if target == "decode":
            with VtkReader(path) as r:
                h = r.header
            arch = h.get("arch") if isinstance(h.get("arch"), str) else "vidtok"
            tok = seeds.tokenizers.get(arch, seeds.tokenizers["vidtok"])
            blocks = list(iter_decode(path, model=tok, device="cpu"))
            frames = np.concatenate(blocks) if blocks else np.zeros((0, 0, 0, 3), np.uint8)
            want = (h["frame_count"], h["height"], h["width"], 3)
            if frames.shape != want or frames.dtype != np.uint8:
                raise WrongShape(f"decoded {frames.shape} {frames.dtype}, header promises {want}")
        elif target == "read_tokens":
            for c in read_tokens(path):
                for name in c.grids:
                    c.shaped(name)
        else:
            argv = ["info", str(path)] if target == "info" else ["tokens", str(path), "-o", str(work / "t.npz"), "--force"]
            if target == "info" and hash(path.name) % 2:
                argv.insert(1, "--json")
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                try:
                    main(argv)
                    code = 0
                except SystemExit as e:
                    code = e.code
            if code not in (0, 1) or "Traceback" in err.getvalue() or (code == 1 and len(err.getvalue().strip().splitlines()) != 1):
                raise BadExit(f"exit {code}: {err.getvalue()[-300:]!r}")
            return "ok" if code == 0 else "refused"
    except VtcodecError as e:
        if "\n" in str(e):
            raise BadExit(f"multi-line error: {str(e)[:200]!r}") from None
        return "refused"
    return "ok"


class WrongShape(Exception):
    pass


class BadExit(Exception):
    pass


class CaseTimeout(BaseException):
    pass


def signature(target: str, exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in tb if "vtcodec" in f.filename and "fuzz_vtk" not in f.filename] or tb[-1:]
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{target} {type(exc).__name__} at {where}"


def _alarm(signum, frame):
    raise CaseTimeout()


def run_inprocess(target: str, data: bytes, seeds: Seeds, work: Path, time_limit: float = TIME_LIMIT_S) -> tuple[str, str]:
    """(outcome, signature or ''): outcome ok / refused / fail / timeout."""
    path = work / "case.vtk"
    path.write_bytes(data)
    # CPU time, not wall time: a shared machine's load must not turn a slow case into a "hang"
    # (the forked run also kills a child past its wall-clock limit)
    old = signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, time_limit)
    try:
        with vlimits.using(FUZZ_LIMITS):
            return run_target(target, path, seeds, work), ""
    except CaseTimeout:
        return "timeout", f"{target} timeout over {time_limit:.0f} s of CPU"
    except Exception as e:  # noqa: BLE001 - every other exception is what we look for
        return "fail", signature(target, e) + (f" ({str(e)[:120]})" if isinstance(e, (WrongShape, BadExit)) else "")
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def _vm_hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_forked(target: str, data: bytes, seeds: Seeds, work: Path) -> tuple[str, str, int]:
    """The case in a forked child: stopped past TIME_LIMIT_S of CPU, killed past 3x that of wall
    clock (a machine shared with other jobs); its peak RSS over MEMORY_LIMIT is a failure.
    Returns (outcome, signature, peak bytes)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            out, sig = run_inprocess(target, data, seeds, work)
            peak = _vm_hwm()
            msg = json.dumps([out, sig, peak]).encode()
        except BaseException as e:  # noqa: BLE001
            msg = json.dumps(["fail", f"{target} {type(e).__name__} in harness", 0]).encode()
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    deadline = time.monotonic() + 3 * TIME_LIMIT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            return "timeout", f"{target} killed past {3 * TIME_LIMIT_S:.0f} s of wall clock", 0
        time.sleep(0.002)
    raw = os.read(r, 1 << 16)
    os.close(r)
    if not raw:
        return "fail", f"{target} child died (status {status}: memory or signal)", 0
    out, sig, peak = json.loads(raw)
    if out in ("ok", "refused") and peak > MEMORY_LIMIT:
        return "fail", f"{target} peak memory {peak >> 20} MiB over {MEMORY_LIMIT >> 20} MiB", peak
    return out, sig, peak


def run(cases: int, seed: int, *, forked: bool, save: Path | None = None, kinds=KINDS, targets=TARGETS,
        report=print, seeds: Seeds | None = None) -> dict:
    """Run `cases` cases; returns the tallies and the failure signatures (with one example each)."""
    seeds = seeds or load_seeds()
    rng = random.Random(seed)
    if forked:  # warm every target's lazy imports and caches once, before the first fork
        with tempfile.TemporaryDirectory(prefix="vtkfuzz") as tmp:
            for target in targets:
                run_inprocess(target, emit(seeds.models[0]), seeds, Path(tmp))
    by_kind: Counter = Counter()
    outcomes: Counter = Counter()
    failures: dict[str, tuple[str, int]] = {}
    peak_max = 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vtkfuzz") as tmp:
        work = Path(tmp)
        for i in range(cases):
            kind = kinds[i % len(kinds)]
            target = targets[(i // len(kinds)) % len(targets)]
            kind, data = make_case(rng, seeds, kind)
            if forked:
                out, sig, peak = run_forked(target, data, seeds, work)
                peak_max = max(peak_max, peak)
            else:
                out, sig = run_inprocess(target, data, seeds, work)
            by_kind[(kind, target)] += 1
            outcomes[out] += 1
            if out in ("fail", "timeout"):
                if sig not in failures:
                    failures[sig] = (kind, i)
                    report(f"FAIL #{i} [{kind} -> {target}] {sig}")
                    if save:
                        save.mkdir(parents=True, exist_ok=True)
                        (save / f"fail_{len(failures):03d}_{kind}_{target}.vtk").write_bytes(data)
            if (i + 1) % 1000 == 0:
                dt = time.perf_counter() - t0
                report(f"{i + 1} cases, {(i + 1) / dt:.1f} cases/s, {dict(outcomes)}")
    dt = time.perf_counter() - t0
    return {"cases": cases, "seconds": dt, "cases_per_s": cases / dt, "outcomes": dict(outcomes),
            "by_kind": {f"{k}/{t}": n for (k, t), n in sorted(by_kind.items())}, "failures": failures,
            "peak_rss_max_mib": peak_max >> 20}


def _worker(args) -> dict:
    cases, seed, save = args
    return run(cases, seed, forked=True, save=save, report=lambda s: print(f"[seed {seed}] {s}", flush=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes, each forking a child per case")
    ap.add_argument("--save", type=Path, default=None, help="folder for one reproducer per failure signature")
    args = ap.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    per = [args.cases // args.jobs + (j < args.cases % args.jobs) for j in range(args.jobs)]
    t0 = time.perf_counter()
    if args.jobs == 1:
        results = [_worker((per[0], args.seed, args.save))]
    else:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(args.jobs) as pool:
            results = pool.map(_worker, [(n, args.seed * 1000 + j, args.save) for j, n in enumerate(per)])
    wall = time.perf_counter() - t0
    outcomes: Counter = Counter()
    by_kind: Counter = Counter()
    failures: dict = {}
    for r in results:
        outcomes.update(r["outcomes"])
        by_kind.update(r["by_kind"])
        for sig, ex in r["failures"].items():
            failures.setdefault(sig, ex)
    print(f"\n{args.cases} cases in {wall:.0f} s: {args.cases / wall:.1f} cases/s over {args.jobs} jobs")
    print("outcomes:", dict(outcomes))
    kinds = Counter()
    for k, n in by_kind.items():
        kinds[k.split("/")[0]] += n
    print("by mutation kind:", dict(sorted(kinds.items())))
    print("by kind/target:", json.dumps(dict(sorted(by_kind.items()))))
    print("peak RSS of a case (max):", max(r["peak_rss_max_mib"] for r in results), "MiB")
    print(f"{len(failures)} failure signatures" + (":" if failures else ""))
    for sig, (kind, i) in sorted(failures.items()):
        print(f"  {sig}   (first: {kind}, case {i})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
