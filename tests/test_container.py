"""Tests for the .vtk container (src/vtcodec/container.py, format version 3; versions 1 and 2 still read)."""

from __future__ import annotations

import io
import json
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from vtcodec.container import (
    END_MAGIC,
    FORMAT_VERSION,
    HEADER_DICT,
    INDEX,
    MAGIC,
    MAX_HEADER_LEN,
    SEGMENT,
    SHARED,
    TOKENS,
    ChunkEntry,
    Unit,
    VtkReader,
    VtkWriter,
    pack_header,
)
from vtcodec.errors import FormatError, OutputError, VtcodecError
from vtcodec.packing import unpack_streams

GOLDEN = Path(__file__).resolve().parent / "golden" / "v1_minimal.vtk"


def header(frame_count: int, **extra) -> dict:
    h = {
        "model": "test-model",
        "checkpoint_sha256": "ab" * 32,
        "width": 32,
        "height": 24,
        "fps": "25/1",
        "frame_count": frame_count,
        "chunk_frames": 4,
    }
    h.update(extra)
    return h


# A layout described independently of the writer, straight from the spec, so the writer is
# checked against the spec rather than against itself. chunks: [(chunk, first, n, key, units)].
def spec_bytes(hdr: dict, chunks, *, version: int = FORMAT_VERSION) -> bytes:
    blob = json.dumps(hdr, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if version >= 3:  # raw DEFLATE with the preset dictionary
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=HEADER_DICT)
        blob = c.compress(blob) + c.flush()
    pre = MAGIC + struct.pack("<HI", version, len(blob)) + blob
    out = bytearray(pre + struct.pack("<I", zlib.crc32(pre)))
    entries, offsets, prev = [], [], None
    for chunk, first, n, key, units in chunks:
        if version < 4:
            entries.append(struct.pack("<QIQIB", len(out), chunk, first, n, int(key)))
        else:  # offset step (not for the first), chunk step - 1, n_frames * 2 + key: LEB128 varints
            steps = ([] if prev is None else [len(out) - prev[0]]) + [chunk - (prev[1] + 1 if prev else 0), 2 * n + key]
            entries.append(b"".join(leb128(v) for v in steps))
            prev = (len(out), chunk)
        for utype, payload in units:
            out += raw_unit(utype, payload)
    index_offset = len(out)
    count = struct.pack("<I", len(entries)) if version < 4 else leb128(len(entries))
    out += raw_unit(INDEX, count + b"".join(entries))
    out += trailer(index_offset)
    return bytes(out)


def leb128(v: int) -> bytes:
    out = []
    while True:
        out.append((v & 0x7F) | (0x80 if v >> 7 else 0))
        v >>= 7
        if not v:
            return bytes(out)


def raw_unit(utype: int, payload: bytes) -> bytes:
    head = struct.pack("<BI", utype, len(payload))
    return head + payload + struct.pack("<I", zlib.crc32(head + payload))


def trailer(index_offset: int) -> bytes:
    off = struct.pack("<Q", index_offset)
    return off + struct.pack("<I", zlib.crc32(off)) + END_MAGIC


def with_index(data: bytes, entries, *, index_offset: int | None = None, body: bytes | None = None) -> bytes:
    """Replace a file's index (and optionally its unit region) with hand-made entries."""
    r = VtkReader(io.BytesIO(data))
    start = r.index[0].offset if r.index else r._index_offset
    body = data[: r._index_offset] if body is None else data[:start] + body
    off = len(body) if index_offset is None else index_offset
    payload = struct.pack("<I", len(entries)) + b"".join(struct.pack("<QIQIB", *e) for e in entries)
    return body + raw_unit(INDEX, payload) + trailer(off)


def write_small(path, n_chunks=3, key_every=2, frames=4, payload=lambda c, u: bytes([c, u]) * (5 + c),
                version=FORMAT_VERSION):
    with VtkWriter(path, header(n_chunks * frames), version=version) as w:
        for c in range(n_chunks):
            key = c % key_every == 0
            w.begin_chunk(c, c * frames, frames, key)
            if key:
                w.write_unit(SEGMENT, payload(c, 0))
            w.write_unit(SHARED, payload(c, 1))
            w.write_unit(TOKENS, payload(c, 2))
    return w


def read_all(data: bytes) -> list[Unit]:
    with VtkReader(io.BytesIO(data)) as r:
        return list(r.units())


# ----------------------------------------------------------------------------------- round trip


def test_round_trip_and_spec_conformance(tmp_path):
    path = tmp_path / "a.vtk"
    units = {
        0: [(SEGMENT, b'{"k":0}'), (SHARED, b""), (TOKENS, os.urandom(1000))],
        1: [(TOKENS, os.urandom(3))],
        5: [(SEGMENT, b"{}"), (TOKENS, b"x" * 70000)],
    }
    layout = [(0, 0, 4, True), (1, 4, 4, False), (5, 8, 1, True)]
    hdr = header(9, extra={"unicode": "héllo", "nested": [1, {"a": None}]})
    with VtkWriter(path, hdr) as w:
        for chunk, first, n, key in layout:
            w.begin_chunk(chunk, first, n, key)
            for utype, payload in units[chunk]:
                w.write_unit(utype, payload)
    data = path.read_bytes()
    assert data == spec_bytes(hdr, [(c, f, n, k, units[c]) for c, f, n, k in layout])
    assert w.bytes_written == len(data)
    index_len = len(data) - 20 - 9 - struct.unpack("<Q", data[-20:-12])[0]  # trailer, unit framing
    assert index_len == 1 + 2 + 3 + 4  # count; chunk 0: 2 varints; chunk 1: 3; chunk 5: 3 (offset step 70k: 2 more bytes)
    assert w.unit_sizes == [(t, len(p)) for c in (0, 1, 5) for t, p in units[c]] + [(INDEX, index_len)]

    with VtkReader(path) as r:
        assert r.header == hdr
        assert r.file_size == len(data)
        assert [(e.chunk, e.first_frame, e.n_frames, e.key) for e in r.index] == layout
        assert r.index[0].offset == 14 + struct.unpack_from("<I", data, 10)[0] + 4
        got = list(r.units())
        assert got == [Unit(t, p, c) for c in (0, 1, 5) for t, p in units[c]]
        r.verify()


def test_numpy_ints_accepted(tmp_path):
    with VtkWriter(tmp_path / "n.vtk", header(4)) as w:
        w.begin_chunk(np.int64(0), np.int32(0), np.uint16(4), np.bool_(True))
        w.write_unit(np.int8(SEGMENT), np.arange(3, dtype=np.uint8))
    with VtkReader(tmp_path / "n.vtk") as r:
        assert list(r.units(np.int64(1), np.int64(2))) == [Unit(SEGMENT, b"\x00\x01\x02", 0)]


def test_empty_video(tmp_path):
    with VtkWriter(tmp_path / "e.vtk", header(0)):
        pass
    with VtkReader(tmp_path / "e.vtk") as r:
        assert r.index == [] and list(r.units()) == []
        r.verify()


# ---------------------------------------------------------------------------------------- golden

GOLDEN_HEADER = {
    "checkpoint_sha256": "7f1c3a9e5b2d4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8",
    "chunk_frames": 4,
    "fps": "30000/1001",
    "frame_count": 10,
    "height": 44,
    "levels": [8, 5, 5, 5],
    "model": "golden-fsq",
    "pad": [0, 0, 64, 48],
    "tool": "vtcodec golden",
    "width": 60,
}
GOLDEN_PREAMBLE = (
    b"\x89VTK\r\n\x1a\n"  # magic
    + b"\x01\x00"  # format version 1
    + b"\xf6\x00\x00\x00"  # header length 246
    + b'{"checkpoint_sha256":"7f1c3a9e5b2d4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8",'
    b'"chunk_frames":4,"fps":"30000/1001","frame_count":10,"height":44,"levels":[8,5,5,5],'
    b'"model":"golden-fsq","pad":[0,0,64,48],"tool":"vtcodec golden","width":60}'
    + b"I\xb7O\xc9"  # CRC32 of everything above
)


def test_golden_v1_file():
    data = GOLDEN.read_bytes()
    assert data[: len(GOLDEN_PREAMBLE)] == GOLDEN_PREAMBLE
    assert data[-8:] == b"VTKEND\x00\x00"
    with VtkReader(GOLDEN) as r:
        assert r.header == GOLDEN_HEADER
        assert r.index == [
            ChunkEntry(offset=264, chunk=0, first_frame=0, n_frames=4, key=True),
            ChunkEntry(offset=384, chunk=1, first_frame=4, n_frames=4, key=False),
            ChunkEntry(offset=433, chunk=2, first_frame=8, n_frames=2, key=True),
        ]
        units = list(r.units())
    assert [(u.type, u.chunk) for u in units] == [(1, 0), (2, 0), (3, 0), (3, 1), (1, 2), (3, 2)]
    assert units[0].payload == b'{"segment":0}' and units[4].payload == b'{"segment":1}'
    decoded = [unpack_streams(u.payload) for u in units if u.type != SEGMENT]
    expected = [
        ("ref", [[[131, 128, 125], [122, 119, 116]]]),
        ("tok", [[[262, 259, 256], [253, 250, 247]]]),
        ("tok", [[[393, 390, 387], [384, 381, 378]]]),
        ("tok", [[[524, 521], [518, 515]]]),
    ]
    for got, (name, values) in zip(decoded, expected):
        assert list(got) == [name]
        arr, levels = got[name]
        assert levels == [8, 5, 5, 5]
        np.testing.assert_array_equal(arr, np.array(values))


# ----------------------------------------------------------------------------------- corruption


@pytest.fixture(scope="module")
def small() -> bytes:
    return GOLDEN.read_bytes()


def test_bad_magic(small):
    with pytest.raises(FormatError, match="not a .vtk file"):
        VtkReader(io.BytesIO(b"RIFF" + small[4:]))
    with pytest.raises(FormatError, match="not a .vtk file"):
        VtkReader(io.BytesIO(b""))


def test_future_version(small):
    data = small[:8] + struct.pack("<H", 5) + small[10:]
    with pytest.raises(FormatError, match=r"version 5 \(this vtcodec reads versions 1, 2, 3, 4\)"):
        VtkReader(io.BytesIO(data))


def test_writer_writes_version_4_and_reader_reports_the_version(tmp_path, small):
    with VtkReader(io.BytesIO(small)) as r:
        assert r.version == 1
    hdr = dict(GOLDEN_HEADER, frame_count=0)
    with VtkWriter(tmp_path / "v4.vtk", hdr):
        pass
    data = (tmp_path / "v4.vtk").read_bytes()
    assert struct.unpack("<H", data[8:10]) == (FORMAT_VERSION,) == (4,)
    with VtkReader(tmp_path / "v4.vtk") as r:
        assert r.version == 4 and r.header == hdr


def test_version_3_files_still_read(tmp_path):
    """Version 3 (25-byte index entries) is what the writer wrote before: still read, same units."""
    for version in (3, 4):
        write_small(tmp_path / f"v{version}.vtk", version=version)
    with VtkReader(tmp_path / "v3.vtk") as r3, VtkReader(tmp_path / "v4.vtk") as r4:
        assert (r3.version, r4.version) == (3, 4)
        assert [(e.chunk, e.first_frame, e.n_frames, e.key) for e in r3.index] == \
            [(e.chunk, e.first_frame, e.n_frames, e.key) for e in r4.index]
        assert [(u.type, bytes(u.payload)) for u in r3.units()] == [(u.type, bytes(u.payload)) for u in r4.units()]
    assert (tmp_path / "v3.vtk").stat().st_size - (tmp_path / "v4.vtk").stat().st_size == (4 + 3 * 25) - (1 + 2 + 3 + 3)


def test_forged_version_4_index_rejected(tmp_path):
    write_small(tmp_path / "ok.vtk")
    data = (tmp_path / "ok.vtk").read_bytes()
    at = struct.unpack("<Q", data[-20:-12])[0]
    body = data[:at]

    def bad(index: bytes, match: str):
        with pytest.raises(FormatError, match=match):
            read_all(body + raw_unit(INDEX, index) + trailer(at))
    real = data[at + 5:-24]
    read_all(body + raw_unit(INDEX, real) + trailer(at))  # the real index, re-framed, reads
    bad(b"\x7f", "cannot fit")                              # 127 entries in 1 byte
    bad(real + b"\x00", "after its 3 entries")
    bad(real[:-1], "truncated .vtk index")
    bad(b"\x01\x00\x09", "covers 4 frames")                 # one chunk of 4 frames: the header says 12
    bad(b"\x01\x00\x08", "not a key chunk")
    bad(b"\x03\x00\x09" + bytes([1]) + b"\x00\x08\x05\x00\x09", "too few for a unit|SEGMENT|TOKENS")
    bad(b"\x01\x80\x00\x09", "non-canonical")


def test_version_3_header_is_compressed_and_checked():
    """A codec-like header shrinks to about a quarter; a broken DEFLATE stream is a FormatError."""
    hdr = {"arch": "reftok", "checkpoint_sha256": "e5" * 32, "chunk_frames": 16, "fps": "10/1",
           "frame_count": 0, "height": 256, "key_streams": ["intra"], "model": "reftok", "overlap": 0,
           "pad_box": [0, 0, 256, 256], "pixels_per_token": 1024, "refresh_db": 1.0, "segment_chunks": 8,
           "stream_levels": {"intra": [8, 8, 8, 5, 5, 5], "target": [8, 8, 8, 5, 5, 5]}, "tile": 128,
           "tile_batch": 8, "tiles": 4, "vtcodec_version": "0.1.0", "width": 256}
    data = spec_bytes(hdr, [])
    text = json.dumps(hdr, sort_keys=True, separators=(",", ":")).encode()
    stored = struct.unpack("<I", data[10:14])[0]
    assert stored < 0.35 * len(text)
    with VtkReader(io.BytesIO(data)) as r:
        assert r.header == hdr
    for blob, match in ((b"\xff\xff", "not a DEFLATE stream"), (pack_header(text)[:-3], "does not end exactly"),
                        (pack_header(text) + b"\0", "does not end exactly"),
                        (pack_header(b" " * (MAX_HEADER_LEN + 1)), "inflates past")):
        pre = MAGIC + struct.pack("<HI", 3, len(blob)) + blob
        bad = pre + struct.pack("<I", zlib.crc32(pre)) + data[14 + stored + 4:]
        with pytest.raises(FormatError, match=match):
            VtkReader(io.BytesIO(bad))


def test_truncation_at_every_offset(small):
    for n in range(len(small)):
        try:
            read_all(small[:n])
        except FormatError:
            continue
        pytest.fail(f"truncation to {n} bytes went unnoticed")


def test_every_bit_flip_is_detected(small):
    data = bytearray(small)
    undetected = []
    for i in range(len(data)):
        for bit in range(8):
            data[i] ^= 1 << bit
            try:
                read_all(bytes(data))
            except FormatError:
                pass
            else:
                undetected.append((i, bit))
            finally:
                data[i] ^= 1 << bit
    assert not undetected


def test_absurd_unit_length_rejected_before_allocation(small):
    off = 264  # first unit of the golden file
    for length in (0xFFFFFFFF, 200 << 20):
        data = bytearray(small)
        data[off + 1 : off + 5] = struct.pack("<I", length)
        tracemalloc.start()
        try:
            with pytest.raises(FormatError, match=f"claims {length} payload bytes"):
                read_all(bytes(data))
            assert tracemalloc.get_traced_memory()[1] < 1 << 20
        finally:
            tracemalloc.stop()


def test_absurd_header_length(small):
    for length in (0xFFFFFFFF, 1 << 20, 100_000, 0):
        data = small[:10] + struct.pack("<I", length) + small[14:]
        with pytest.raises(FormatError, match=f"header length {length}"):
            VtkReader(io.BytesIO(data))


def test_trailing_garbage(small):
    for extra in (b"\x00", b"garbage!" * 10, small[-20:]):
        with pytest.raises(FormatError):
            read_all(small + extra)


def test_unknown_unit_type(tmp_path):
    hdr = header(4)
    data = spec_bytes(hdr, [(0, 0, 4, True, [(SEGMENT, b"{}"), (9, b"future")])])
    with VtkReader(io.BytesIO(data)) as r:
        with pytest.raises(FormatError, match="unknown unit type 9"):
            r.verify()
    # INDEX is a known type but may appear only once, at the end.
    data = spec_bytes(hdr, [(0, 0, 4, True, [(SEGMENT, b"{}"), (INDEX, b"\0" * 4)])])
    with pytest.raises(FormatError, match="INDEX unit at offset"):
        read_all(data)


def test_index_inconsistent_with_units(small):
    E = [(264, 0, 0, 4, 1), (384, 1, 4, 4, 0), (433, 2, 8, 2, 1)]
    read_all(with_index(small, E))  # the helper reproduces the real index

    def bad(entries, match, **kw):
        with pytest.raises(FormatError, match=match):
            read_all(with_index(small, entries, **kw))

    bad([E[0], (390, 1, 4, 4, 0), E[2]], "too few for a unit")  # offset inside a unit
    bad([E[0], (384, 1, 4, 3, 0), E[2]], "do not continue")  # frame gap
    bad([E[0], E[1]], "covers 8 frames")  # frame_count mismatch
    bad([(264, 0, 0, 4, 0)] + E[1:], "not a key chunk")
    bad([E[0], (384, 1, 4, 4, 1), E[2]], "starts with TOKENS, not SEGMENT")
    bad([E[0], E[1], (433, 2, 8, 2, 0)], "SEGMENT unit at offset")
    bad([E[0], (384, 0, 4, 4, 0), E[2]], "chunk number")
    bad([E[0], E[2], E[1]], "do not continue|not after")
    bad([(265, 0, 0, 4, 1)] + E[1:], "units start at 264")
    bad([E[0], (384, 1, 4, 4, 2), E[2]], "unknown flags")
    bad([], "covers 0 frames")


def test_garbage_or_missing_units_between_data_and_index(small):
    E = [(264, 0, 0, 4, 1), (384, 1, 4, 4, 0), (433, 2, 8, 2, 1)]
    body = small[264:501]  # all units; the index unit starts at 501
    assert VtkReader(io.BytesIO(small))._index_offset == 501
    for changed in (body + b"\0" * 9, body + raw_unit(TOKENS, b"extra")[:-1], body[:-10]):
        with pytest.raises(FormatError):
            read_all(with_index(small, E, body=changed))
    # A whole extra (valid) unit after the last chunk is read as part of it: still decodable,
    # and only a frame-level check could object, so it is accepted by design.
    read_all(with_index(small, E, body=body + raw_unit(TOKENS, b"extra")))


def test_header_content_is_validated():
    for bad_hdr, match in (
        ({k: v for k, v in header(4).items() if k != "fps"}, "lacks required keys"),
        (header(4, fps="30"), "'fps'"),
        (header(4, width=0), "'width'"),
        (header(4, height=True), "'height'"),
        (header(4, checkpoint_sha256="AB" * 32), "checkpoint_sha256"),
    ):
        data = spec_bytes(bad_hdr, [(0, 0, 4, True, [(SEGMENT, b"")])])
        with pytest.raises(FormatError, match=match):
            VtkReader(io.BytesIO(data))
    blob = b'{"a":1,"a":2}'
    pre = MAGIC + struct.pack("<HI", 1, len(blob)) + blob
    data = pre + struct.pack("<I", zlib.crc32(pre)) + raw_unit(INDEX, b"\0" * 4) + trailer(len(pre) + 4)
    with pytest.raises(FormatError, match="duplicate key"):
        VtkReader(io.BytesIO(data))


def test_missing_file_is_a_vtcodec_error(tmp_path):
    with pytest.raises(VtcodecError, match="cannot open"):
        VtkReader(tmp_path / "nope.vtk")


# ------------------------------------------------------------------------------------- seeking


def test_seek_reads_only_needed_units(tmp_path):
    path = tmp_path / "s.vtk"
    write_small(path, n_chunks=10, key_every=3)  # key chunks 0, 3, 6, 9; 4 frames each
    with VtkReader(path) as r:
        before = r.bytes_read
        got = list(r.units(21, 26))  # frame 21 is in chunk 5 (key: 3), frame 25 in chunk 6
        assert [(u.chunk, u.type) for u in got] == [
            (3, SEGMENT), (3, SHARED), (3, TOKENS), (4, SHARED), (4, TOKENS), (5, SHARED), (5, TOKENS),
            (6, SEGMENT), (6, SHARED), (6, TOKENS),
        ]  # fmt: skip
        assert r.bytes_read - before == r.index[7].offset - r.index[3].offset

        assert {u.chunk for u in r.units(12, 13)} == {3}  # a key chunk needs nothing before it
        assert {u.chunk for u in r.units(39)} == {9}
        assert {u.chunk for u in r.units(0, 1)} == {0}
        assert list(r.units(5, 5)) == []
        # stopping early reads no further than the last unit consumed
        it = r.units()
        before = r.bytes_read
        next(it)
        assert r.bytes_read - before == 9 + 10  # unit overhead + the 10-byte SEGMENT payload
        for start, stop in ((-1, 4), (5, 4), (0, 41), (1.5, 4), (0, True)):
            with pytest.raises(VtcodecError, match="frame range"):
                r.units(start, stop)


def test_opening_reads_only_the_ends(tmp_path):
    path = tmp_path / "big.vtk"
    write_small(path, n_chunks=50, payload=lambda c, u: bytes(20_000))
    with VtkReader(path) as r:
        assert r.bytes_read < 3000 < r.file_size // 100


# ------------------------------------------------------------------------------------- writing


def test_writer_exception_leaves_nothing(tmp_path):
    dst = tmp_path / "x.vtk"
    with pytest.raises(RuntimeError):
        with VtkWriter(dst, header(4)) as w:
            w.begin_chunk(0, 0, 4, True)
            w.write_unit(SEGMENT, b"{}")
            assert not dst.exists() and len(list(tmp_path.iterdir())) == 1  # only the temp
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_existing_file_without_force(tmp_path):
    dst = tmp_path / "x.vtk"
    dst.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists"):
        VtkWriter(dst, header(4))
    assert dst.read_bytes() == b"precious" and list(tmp_path.iterdir()) == [dst]
    with VtkWriter(dst, header(4), force=True) as w:
        w.begin_chunk(0, 0, 4, True)
        w.write_unit(SEGMENT, b"{}")
    assert VtkReader(dst).index[0].n_frames == 4
    with pytest.raises(OutputError, match="directory"):
        VtkWriter(tmp_path, header(4), force=True)
    with pytest.raises(OutputError, match="does not exist"):
        VtkWriter(tmp_path / "no" / "x.vtk", header(4))


def test_writer_misuse_raises_and_cleans_up(tmp_path):
    def attempt(steps, match, frames=4):
        dst = tmp_path / "m.vtk"
        w = VtkWriter(dst, header(frames))
        with pytest.raises(VtcodecError, match=match):
            steps(w)
            w.close()
        assert list(tmp_path.iterdir()) == []

    attempt(lambda w: w.write_unit(TOKENS, b""), "before begin_chunk")
    attempt(lambda w: w.begin_chunk(0, 0, 4, False), "must be a key chunk")
    attempt(lambda w: (w.begin_chunk(0, 0, 4, True), w.write_unit(TOKENS, b"")), "must start with a SEGMENT")
    attempt(lambda w: (w.begin_chunk(0, 0, 4, True), w.write_unit(INDEX, b"")), "unit type")
    attempt(lambda w: (w.begin_chunk(0, 0, 4, True), w.write_unit(SEGMENT, "str")), "bytes-like")
    attempt(lambda w: (w.begin_chunk(0, 0, 2, True), w.write_unit(SEGMENT, b"")), "frame_count is 4")
    attempt(lambda w: (w.begin_chunk(0, 0, 2, True), w.begin_chunk(1, 2, 2, False)), "has no units")
    def key_then(first_chunk, n, step):
        return lambda w: (w.begin_chunk(first_chunk, 0, n, True), w.write_unit(SEGMENT, b""), step(w))

    attempt(key_then(0, 2, lambda w: w.begin_chunk(1, 3, 1, False)), "contiguous")
    attempt(key_then(3, 2, lambda w: w.begin_chunk(3, 2, 2, False)), "must increase")
    attempt(key_then(0, 4, lambda w: w.write_unit(SEGMENT, b"")), "only allowed")
    with pytest.raises(VtcodecError, match="lacks required keys"):
        VtkWriter(tmp_path / "h.vtk", {"model": "m"})
    with pytest.raises(VtcodecError, match="JSON"):
        VtkWriter(tmp_path / "h.vtk", header(4, extra=object()))
    assert list(tmp_path.iterdir()) == []


def test_writer_streams_units_to_disk(tmp_path):
    payload = os.urandom(1 << 20)
    tracemalloc.start()
    try:
        with VtkWriter(tmp_path / "big.vtk", header(50)) as w:
            for c in range(50):
                w.begin_chunk(c, c, 1, c == 0)
                w.write_unit(SEGMENT if c == 0 else TOKENS, payload)
            peak_while_writing = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak_while_writing < 1 << 20  # 50 MiB written, less than one unit held
    assert (tmp_path / "big.vtk").stat().st_size == w.bytes_written > 50 << 20


def test_uvarint_is_canonical_and_refuses_negatives():
    from vtcodec.wire import Cursor, uvarint

    for v in (0, 1, 127, 128, 300, 2**32 - 1):
        assert uvarint(v) == leb128(v) and Cursor(memoryview(uvarint(v))).uvarints(1, "v") == [v]
    with pytest.raises(ValueError):
        uvarint(-1)
