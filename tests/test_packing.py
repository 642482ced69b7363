"""Tests for token packing (src/vtcodec/packing.py)."""

from __future__ import annotations

import math
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vtcodec import entropy
from vtcodec.errors import FormatError, VtcodecError
from vtcodec.packing import (
    SegmentCoder,
    LAYOUT_BITS,
    LAYOUT_PLANES,
    LAYOUT_RANGE,
    MAGIC,
    _uvarint,
    entropy_bits,
    pack_streams,
    packed_bits_per_token,
    payload_layouts,
    unpack_streams,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same(got, streams):
    assert list(got) == list(streams)
    for name, (indices, levels) in streams.items():
        arr, lv = got[name]
        assert lv == list(levels)
        assert arr.dtype == np.int64 and arr.shape == np.shape(indices)
        np.testing.assert_array_equal(arr, indices)


levels_st = st.one_of(
    st.lists(st.integers(2, 17), min_size=1, max_size=6),  # FSQ: odd and even level counts
    st.lists(st.integers(2, 300), min_size=1, max_size=3),  # levels above 256 need byte planes
    st.integers(2, 1 << 32).map(lambda k: [k]),  # plain VQ [K], up to the 2**32 limit
)


@st.composite
def streams_st(draw):
    out = {}
    for i in range(draw(st.integers(1, 3))):
        levels = draw(levels_st)
        k = math.prod(levels)
        shape = tuple(draw(st.lists(st.integers(0, 7), min_size=0, max_size=4)))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        kind = draw(st.sampled_from(["uniform", "skewed", "extremes"]))
        if kind == "uniform":
            idx = rng.integers(0, k, size=shape, dtype=np.int64)
        elif kind == "skewed":
            idx = np.minimum(rng.geometric(0.3, size=shape) - 1, k - 1)
        else:
            idx = rng.choice(np.array([0, k - 1], dtype=np.int64), size=shape)
        dtype = draw(st.sampled_from([np.int64, np.uint32, np.int32, np.uint64]))
        if k - 1 <= np.iinfo(dtype).max:
            idx = idx.astype(dtype)
        out[draw(st.text(min_size=1, max_size=8)) + str(i)] = (idx, levels)
    return out


def _rangeable(idx, levels) -> bool:
    return np.ndim(idx) > 0 and np.size(idx) > 0 and max(levels) <= 64


@FAST
@given(streams_st(), st.sampled_from(["auto", "planes", "bits", "range"]))
def test_round_trip(streams, layout):
    if layout == "range" and not all(_rangeable(i, lv) for i, lv in streams.values()):
        with pytest.raises(VtcodecError, match="layout 'range' impossible"):
            pack_streams(streams, level=3, layout=layout)
        return
    payload = pack_streams(streams, level=3, layout=layout)
    assert_same(unpack_streams(payload), streams)


@FAST
@given(st.data())
def test_range_layout_round_trips_on_any_grid(data):
    levels = data.draw(st.lists(st.integers(2, 64), min_size=1, max_size=5))
    grid = tuple(data.draw(st.lists(st.integers(1, 5), min_size=3, max_size=3)))
    groups = data.draw(st.integers(1, 3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    k = math.prod(levels)
    kind = data.draw(st.sampled_from(["uniform", "constant", "two"]))
    n = groups * math.prod(grid)
    idx = {"uniform": rng.integers(0, k, n), "constant": np.full(n, k - 1), "two": rng.choice([0, k - 1], n)}[kind]
    idx = idx.reshape(groups, -1)
    payload = pack_streams({"t": (idx, levels, grid)}, layout="range")
    assert payload[7] == LAYOUT_RANGE
    assert_same(unpack_streams(payload), {"t": (idx, levels)})


def test_range_layout_golden_bytes():
    """The range coder's exact output is the format: these bytes must keep decoding to these tokens."""
    levels, grid = [8, 5], (2, 2, 3)
    idx = np.array([[17, 39, 0, 5, 17, 17, 17, 39, 0, 5, 17, 16]])
    payload = pack_streams({"t": (idx, levels, grid)}, layout="range")
    # magic, 1 stream, name "t", layout 2, ndim 2, dims 1 12, 2 levels 8 5, grid 2 2 3, section length
    assert payload[:17] == MAGIC + bytes([1, 1]) + b"t" + bytes([LAYOUT_RANGE, 2, 1, 12, 2, 8, 5, 2, 2, 3])
    assert payload.hex() == GOLDEN_RANGE_PAYLOAD
    assert_same(unpack_streams(bytes.fromhex(GOLDEN_RANGE_PAYLOAD)), {"t": (idx, levels)})


GOLDEN_RANGE_PAYLOAD = "565450020101740202010c02080502020308330ae26bc06f1fb178e7cb36"


def test_range_layout_uses_the_temporal_context():
    """Tokens that repeat along T cost a fraction of the same tokens with T shuffled per position."""
    rng = np.random.default_rng(5)
    levels = [8, 8, 8, 5, 5, 5]
    step = rng.integers(0, 64000, (4, 1, 64))
    still = np.repeat(step, 8, axis=1).reshape(4, -1)  # 8 steps, each a copy of the first
    moving = rng.integers(0, 64000, (4, 8 * 64))
    size = {name: len(pack_streams({"t": (a, levels, (8, 8, 8))}, layout="range")) for name, a in
            (("still", still), ("moving", moving))}
    # the first step costs what uniform tokens cost (16 bits); the 7 copies must be near free
    assert size["still"] * 8 < 0.25 * 16 * still.size
    assert size["moving"] * 8 > 0.95 * 16 * moving.size
    # exact copies of random tokens are zstd's best case: its match finder takes them for almost
    # nothing, so the encoder's choice there is a zstd layout
    assert pack_streams({"t": (still, levels, (8, 8, 8))})[7] != LAYOUT_RANGE
    assert len(zstandard.ZstdCompressor(write_content_size=True).compress(b"")) == 9  # the frame a layout-2-only payload saves


def test_version_1_payloads_still_read():
    planes = zstandard.ZstdCompressor(write_content_size=True).compress(bytes([1, 7, 2, 4]))
    v1 = forge((2,), levels=(8, 5), frame=planes, version=1)
    assert_same(unpack_streams(v1), {"t": (np.array([17, 39]), [8, 5])})
    with pytest.raises(FormatError, match="unknown layout 2"):
        unpack_streams(forge((2,), levels=(8, 5), layout=LAYOUT_RANGE, version=1))
    with pytest.raises(FormatError, match="unsupported packed token version 3"):
        unpack_streams(forge((2,), version=3))


def test_forged_range_sections_rejected():
    def ranged(shape, levels, grid, section, tail=b""):
        extra = b"".join(_uvarint(x) for x in (*grid, len(section))) + section + tail
        return forge(shape, levels=levels, layout=LAYOUT_RANGE, frame=b"", extra=extra)

    section = entropy.encode(np.arange(6), [8], (1, 2, 3))
    assert unpack_streams(ranged((1, 6), (8,), (1, 2, 3), section))["t"][0].tolist() == [[0, 1, 2, 3, 4, 5]]
    for forged, match in (
        (ranged((1, 6), (8,), (1, 3, 3), section), "does not multiply"),
        (ranged((1, 6), (100,), (1, 2, 3), section), "exceed 64"),
        (ranged((0, 6), (8,), (1, 2, 3), section), "empty or a scalar"),
        (ranged((1, 6), (8,), (1, 2, 3), section, tail=b"\x01"), "bytes after the range-coded sections"),
        (ranged((1, 6), (8,), (1, 2, 3), section + b"\x01\x02\x03\x04\x05\x06"), "bytes past its symbols"),
        (ranged((1, 6), (8,), (1, 2, 3), b"\xff\xff\xff\xff"), "outside its tables"),
        (forge((1, 6), levels=(8,), layout=LAYOUT_RANGE, frame=b"", extra=bytes([1, 2, 3, 50])), "range-coded section"),
    ):
        with pytest.raises(FormatError, match=match):
            unpack_streams(forged)
    with pytest.raises(FormatError, match="max_elements"):
        unpack_streams(ranged((1 << 21, 64), (8,), (1, 8, 8), section))


def test_round_trip_default_level_and_fsq_example():
    rng = np.random.default_rng(0)
    levels = [8, 8, 8, 5, 5, 5]
    streams = {
        "tokens": (rng.integers(0, 64000, size=(4, 16, 16)), levels),
        "ref": (rng.integers(0, 1024, size=(2, 8, 8)), [1024]),
        "scalar": (np.array(3), [7]),
        "empty": (np.zeros((0, 5), np.int16), [2]),
    }
    assert_same(unpack_streams(pack_streams(streams)), streams)
    assert unpack_streams(pack_streams({})) == {}


def test_digit_planes_follow_fsq_index_convention():
    # digit 0 is least significant: index = d0 + 8*d1, as FSQ.codes_to_indices computes it.
    idx = np.array([1 + 8 * 2, 7 + 8 * 4])
    payload = pack_streams({"t": (idx, [8, 5])}, layout="planes", level=1)
    # magic 4, n_streams 1, name_len 1, name "t", layout, ndim, dim 2, n_levels, levels 8 and 5
    layout_at, frame_at = 7, 13
    assert payload[:frame_at] == MAGIC + bytes([1, 1]) + b"t" + bytes([LAYOUT_PLANES, 1, 2, 2, 8, 5])
    plane_bytes = zstandard.ZstdDecompressor().decompress(payload[frame_at:-4])
    assert plane_bytes == bytes([1, 7, 2, 4])
    # bits layout: 6 bits per index (K = 40), MSB first, zero padded
    payload = pack_streams({"t": (idx, [8, 5])}, layout="bits", level=1)
    assert payload[layout_at] == LAYOUT_BITS
    bits = zstandard.ZstdDecompressor().decompress(payload[frame_at:-4])
    assert bits == bytes([0b010001_10, 0b0111_0000])  # 17 = 010001, 39 = 100111, 4 pad bits


def test_out_of_range_and_bad_input_rejected():
    lv = [8, 5]
    for bad, match in (
        (np.array([0, 40]), "index 40 at flat position 1 is outside \\[0, 40\\)"),
        (np.array([[3, -1]]), "index -1"),
        (np.array([0.0, 1.0]), "integer array"),
    ):
        with pytest.raises(VtcodecError, match=match):
            pack_streams({"t": (bad, lv)})
    for levels in ([], [1], [8, True], [2.5], [1 << 16, 1 << 16, 2]):
        with pytest.raises(VtcodecError, match="level|codebook"):
            pack_streams({"t": (np.zeros(3, np.int64), levels)})
    with pytest.raises(VtcodecError, match="zstd level"):
        pack_streams({"t": (np.zeros(3, np.int64), lv)}, level=0)
    with pytest.raises(VtcodecError, match="name"):
        pack_streams({"": (np.zeros(3, np.int64), lv)})


def forge(shape, levels=(8,), layout=LAYOUT_PLANES, frame=None, *, name=b"t", version=2, extra=b"") -> bytes:
    """A payload with a hand-written descriptor (`extra` after its levels: a range-coded stream's
    grid, section length and section) and (by default) an honest empty frame."""
    body = MAGIC[:3] + bytes([version, 1, len(name)]) + name + bytes([layout, len(shape)])
    body += b"".join(_uvarint(d) for d in shape)
    body += bytes([len(levels)]) + b"".join(_uvarint(x) for x in levels) + extra
    if frame is None:
        frame = zstandard.ZstdCompressor(write_content_size=True).compress(b"")
    body += frame
    return body + struct.pack("<I", zlib.crc32(body))


def test_decompression_bomb_rejected_before_allocation():
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(50 << 20))
    tracemalloc.start()
    try:
        # The descriptor claims 2**62 indices: refused from the header alone.
        with pytest.raises(FormatError, match="more than max_elements"):
            unpack_streams(forge((1 << 31, 1 << 31)))
        # Within max_elements, but the frame does not hold what the descriptor needs.
        with pytest.raises(FormatError, match="declares 0 bytes"):
            unpack_streams(forge((1000, 1000)))
        # A frame that declares a huge content size and is really a bomb.
        with pytest.raises(FormatError, match="declares 52428800 bytes, the stream descriptors need 1000"):
            unpack_streams(forge((1000,), frame=bomb))
        assert tracemalloc.get_traced_memory()[1] < 4 << 20
    finally:
        tracemalloc.stop()
    # A frame without a declared size cannot be bounded up front.
    cobj = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    frame = cobj.compress(bytes(10)) + cobj.flush()
    with pytest.raises(FormatError, match="lacks a content size"):
        unpack_streams(forge((10,), frame=frame))
    with pytest.raises(FormatError, match="max_elements=99"):
        unpack_streams(pack_streams({"t": (np.zeros(100, np.int64), [8])}), max_elements=99)


@pytest.fixture(scope="module")
def payload() -> bytes:
    rng = np.random.default_rng(1)
    return pack_streams(
        {"a": (rng.integers(0, 64000, (3, 4)), [8, 8, 8, 5, 5, 5]), "b": (rng.integers(0, 300, (5,)), [300])},
        level=3,
    )


def test_truncated_payload_rejected(payload):
    for n in range(len(payload)):
        with pytest.raises(FormatError):
            unpack_streams(payload[:n])
    with pytest.raises(FormatError):
        unpack_streams(payload + b"\0")


def test_every_bit_flip_rejected(payload):
    data = bytearray(payload)
    for i in range(len(data)):
        for bit in range(8):
            data[i] ^= 1 << bit
            with pytest.raises(FormatError):
                unpack_streams(bytes(data))
            data[i] ^= 1 << bit


def test_forged_descriptors_rejected():
    # Correct CRC, broken meaning: each must still be a one-line FormatError.
    for forged, match in (
        (forge((3,), levels=(1,)), "invalid levels"),
        (forge((3,), layout=7), "unknown layout 7"),
        (forge((3,), name=b"\xff"), "not UTF-8"),
        (forge((3,), name=b""), "empty name"),
        (forge((1 << 33,)), "varint"),
        (MAGIC[:3] + b"\x02" + b"\0" * 8, "CRC|version"),
    ):
        with pytest.raises(FormatError, match=match):
            unpack_streams(forged)
    # out-of-range digits and indices inside an honest frame
    planes = zstandard.ZstdCompressor(write_content_size=True).compress(bytes([9, 0]))
    with pytest.raises(FormatError, match="digit 0 = 9, outside levels\\[0\\] = 8"):
        unpack_streams(forge((2,), levels=(8,), frame=planes))
    bits = zstandard.ZstdCompressor(write_content_size=True).compress(bytes([0b11111000]))
    with pytest.raises(FormatError, match="is 31, outside codebook size 20"):
        unpack_streams(forge((1,), levels=(20,), layout=LAYOUT_BITS, frame=bits))
    bits = zstandard.ZstdCompressor(write_content_size=True).compress(bytes([0b00001001]))
    with pytest.raises(FormatError, match="padding"):
        unpack_streams(forge((1,), levels=(20,), layout=LAYOUT_BITS, frame=bits))


def test_entropy_of_known_distributions():
    for k in range(0, 11):
        assert entropy_bits(np.arange(1 << k).repeat(3)) == pytest.approx(k)
    assert entropy_bits(np.array([], dtype=np.int64)) == 0.0
    assert entropy_bits(np.zeros((4, 4), np.int32)) == 0.0
    # p = (1/2, 1/4, 1/4) -> 1.5 bits
    assert entropy_bits(np.array([0, 0, 1, 2])) == pytest.approx(1.5)
    assert packed_bits_per_token(100, 80) == 10.0
    with pytest.raises(VtcodecError):
        packed_bits_per_token(100, 0)


def test_auto_picks_the_smaller_layout():
    rng = np.random.default_rng(2)
    levels = [8, 8, 8, 5, 5, 5]
    basis = np.cumprod([1] + levels[:-1])
    # uniform tokens favour bit packing; a spatially smooth field of FSQ digits favours planes
    uniform = rng.integers(0, 64000, (16, 32, 32))
    y, x = np.mgrid[0:32, 0:32] / 32
    smooth = 0
    for n, b, f, g in zip(levels, basis, (1, 2, 0.5, 1, 3, 0.2), (0.3, 1, 2, 0.5, 1, 1)):
        wave = 1 + np.sin(2 * np.pi * (f * x + g * y) + rng.normal(0, 0.3, (16, 32, 32)))
        smooth = smooth + np.clip(np.rint((n - 1) / 2 * wave), 0, n - 1).astype(np.int64) * b
    picked = []
    for idx in (uniform, smooth):
        sizes = {
            lay: len(pack_streams({"t": (idx, levels)}, layout=lay, level=3))
            for lay in ("auto", "planes", "bits", "range")
        }
        assert sizes["auto"] == min(sizes["planes"], sizes["bits"], sizes["range"])
        picked.append(pack_streams({"t": (idx, levels)}, level=3)[7])
    # uniform tokens: the adaptive tables cost a little over fixed-width bits; smooth: range coding
    assert picked == [LAYOUT_BITS, LAYOUT_RANGE]


def test_plain_vq_at_the_2_pow_32_limit_round_trips():
    """Found by hypothesis: levels [2**32] (K = 2**32, the spec's limit) packed but did not unpack."""
    idx = np.array([3653403231, 0, (1 << 32) - 1], np.int64)
    (got, levels), = unpack_streams(pack_streams({"v": (idx, [1 << 32])})).values()
    assert levels == [1 << 32] and np.array_equal(got, idx)


def _spec_encode(flat, levels, grid) -> bytes:
    """Layout 2 written from the `vtcodec.entropy` docstring alone, in exact integer arithmetic
    (no carries or held-back bytes), to check the implementation against its specification."""
    m, (t_, h, w) = len(levels), grid
    d = [[(int(v) // math.prod(levels[:i])) % lv for i, lv in enumerate(levels)] for v in flat]
    tables, low, rng, shifts = {}, 0, 2**32 - 1, 0
    for e, row in enumerate(d):
        t, y, x = (e // (h * w)) % t_, (e // w) % h, e % w
        for i, lv in enumerate(levels):
            if t > 0:
                ctx = (i, 0, 1 + d[e - h * w][i], 0)
            else:
                ctx = (i, 1, 1 + d[e - 1][i] if x else 0, 1 + d[e - w][i] if y else 0)
            f = tables.setdefault(ctx, [2] * lv)
            s, total = row[i], sum(f)
            r = rng // total
            low, rng = low + r * sum(f[:s]), r * f[s]
            while rng < 2**24:
                rng, low, shifts = rng << 8, low << 8, shifts + 1
            f[s] += 5
            if total + 5 > 2**13:
                f[:] = [(c + 1) >> 1 for c in f]
    low = -(-low // 2**24) * 2**24
    return low.to_bytes(4 + shifts, "big").rstrip(b"\0")


@FAST
@given(st.data())
def test_range_coder_matches_its_specification(data):
    levels = data.draw(st.lists(st.integers(2, 64), min_size=1, max_size=3))
    grid = tuple(data.draw(st.lists(st.integers(1, 4), min_size=3, max_size=3)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = data.draw(st.integers(1, 3)) * math.prod(grid)
    k = math.prod(levels)
    skew = data.draw(st.sampled_from([0.0, 0.9, 0.999]))
    flat = np.where(rng.random(n) < skew, k - 1, rng.integers(0, k, n))
    assert entropy.encode(flat, levels, grid) == _spec_encode(flat, levels, grid)


def test_range_coder_long_skewed_stream_rescales_and_is_pinned():
    """4,000 tokens of one context (its table rescales many times): round trip, agreement with
    the specification, and the exact bytes (a golden hash)."""
    import hashlib

    rng = np.random.default_rng(11)
    flat = np.minimum(rng.geometric(0.7, 4000) - 1, 7)
    flat[::97] = 7
    section = entropy.encode(flat, [8], (1, 1, 4000))
    assert section == _spec_encode(flat, [8], (1, 1, 4000))
    assert np.array_equal(entropy.decode(section, 4000, [8], (1, 1, 4000)), flat)
    assert hashlib.sha256(section).hexdigest() == GOLDEN_LONG_SECTION_SHA256
    # a reader accepts any value in the final interval: trailing zeros change nothing
    assert np.array_equal(entropy.decode(section + b"\0", 4000, [8], (1, 1, 4000)), flat)


GOLDEN_LONG_SECTION_SHA256 = "82684fbdeca9b9ac6bd478b302d0eee520d2fa0bdeb68f7535732a20bdd0af8f"


def test_grids_are_checked_and_scalars_take_a_zstd_layout():
    """Found by review: a scalar given a grid was range coded, and its own reader refused it."""
    got = unpack_streams(pack_streams({"t": (np.array(5), [8], (1, 1, 1))}))
    assert got["t"][0].shape == () and int(got["t"][0]) == 5
    for grid in ((2.9, 1, 4), (True, 2, 4), (2, 4), (1, 2, 5), "abc", 7):
        with pytest.raises(VtcodecError, match="grid"):
            pack_streams({"t": (np.zeros((3, 8), np.int64), [8], grid)})
        with pytest.raises(VtcodecError, match="grid"):  # checked even where layout 2 is out
            pack_streams({"t": (np.zeros((0, 8), np.int64), [8], grid)})


def test_range_coded_digits_are_capped_per_payload(monkeypatch):
    """A few bytes can code millions of repeated digits; the reader refuses more than 2**24 in
    one payload before decoding anything, summed over streams."""
    big = forge((1 << 22,), levels=(2,) * 8, layout=LAYOUT_RANGE, frame=b"",
                extra=b"".join(_uvarint(x) for x in (1, 1, 1 << 22, 0)))
    with pytest.raises(FormatError, match="range-coded digits"):
        unpack_streams(big)
    # the writer keeps under the cap, summed over streams, by falling back to a zstd layout
    monkeypatch.setattr(entropy, "MAX_SYMBOLS", 1000)
    idx = np.zeros((1, 80), np.int64)
    payload = pack_streams({"a": (idx, [2] * 9), "b": (idx, [2] * 9)})  # 720 digits each
    assert [lay for lay, _ in payload_layouts(payload).values()][0] == "range" != payload_layouts(payload)["b"][0]
    assert_same(unpack_streams(payload), {"a": (idx, [2] * 9), "b": (idx, [2] * 9)})
    with pytest.raises(VtcodecError, match="would exceed 1000 digits"):
        pack_streams({"a": (idx, [2] * 9), "b": (idx, [2] * 9)}, layout="range")
    # the reader sums over streams too, and accepts exactly the cap
    monkeypatch.setattr(entropy, "MAX_SYMBOLS", 2000)
    both = pack_streams({"a": (idx, [2] * 9), "b": (idx, [2] * 9)}, layout="range")
    monkeypatch.setattr(entropy, "MAX_SYMBOLS", 1440)
    assert_same(unpack_streams(both), {"a": (idx, [2] * 9), "b": (idx, [2] * 9)})
    monkeypatch.setattr(entropy, "MAX_SYMBOLS", 1439)
    with pytest.raises(FormatError, match="range-coded digits"):
        unpack_streams(both)


def test_range_coder_carry_through_held_back_ff_bytes():
    """A fixed input whose carry runs through held-back 0xFF bytes (the coder's hardest path)."""
    flat = np.random.default_rng(4).integers(0, 8, 200)
    section = entropy.encode(flat, [8], (1, 1, 200))
    assert section == _spec_encode(flat, [8], (1, 1, 200))
    assert np.array_equal(entropy.decode(section, 200, [8], (1, 1, 200)), flat)


# -- version 3: a segment's payloads, coded with shared state --------------------------------------

LV3 = {"a": [15, 15, 5, 5], "b": [5, 5], "refresh_tiles": None}
GRIDS3 = {"a": (1, 4, 6), "b": (2, 3, 4)}


def _segment(payloads_streams, coder=None):
    coder = coder or SegmentCoder({k: v for k, v in LV3.items() if v}, GRIDS3)
    coder.start()
    return [coder.pack(s) for s in payloads_streams]


def _chunks(rng, n=4):
    return [{"a": rng.integers(0, 15 * 15 * 5 * 5, (2, 24)), "b": rng.integers(0, 5, (1, 24)) * 5}
            for _ in range(n)]


def test_segment_payloads_round_trip_in_order():
    rng = np.random.default_rng(3)
    chunks = _chunks(rng) + [{"a": rng.integers(0, 15, (3, 24))}]  # a stream alone, other rows
    payloads = _segment(chunks)
    assert all(p[:4] == b"VTP\x03" for p in payloads)
    reader = SegmentCoder({k: v for k, v in LV3.items() if v}, GRIDS3)
    reader.start()
    for want, p in zip(chunks, payloads):
        got = reader.unpack(p)
        assert sorted(got) == sorted(want)
        for k in want:
            assert np.array_equal(got[k][0], want[k]) and got[k][1] == LV3[k]


def test_segment_state_carries_from_payload_to_payload():
    """A chunk that repeats the one before costs a fraction of it: the tables and the previous
    tokens carry over within a segment, and start afresh at the next SEGMENT."""
    rng = np.random.default_rng(4)
    smooth = (np.add.outer(np.arange(4), np.arange(6)) % 15).reshape(1, 24)
    chunk = {"a": np.repeat(smooth + 15 * rng.integers(0, 3, (1, 24)), 2, axis=0)}
    sizes = [len(p) for p in _segment([chunk] * 4)]
    assert sizes[-1] < 0.7 * sizes[0]
    assert _segment([chunk])[0] == _segment([chunk] * 4)[0]  # a new segment pays again


def test_segment_payload_needs_its_segment():
    payload = _segment(_chunks(np.random.default_rng(5), 1))[0]
    reader = SegmentCoder({k: v for k, v in LV3.items() if v}, GRIDS3)
    with pytest.raises(FormatError, match="before any SEGMENT"):
        reader.unpack(payload)
    with pytest.raises(FormatError, match="not in the header|out of order"):
        r = SegmentCoder({"a": LV3["a"]}, {"a": GRIDS3["a"]})
        r.start()
        r.unpack(payload)


def test_streams_the_header_does_not_describe_take_version_2():
    coder = SegmentCoder({"a": LV3["a"], "t": [4]}, {"a": GRIDS3["a"]})
    coder.start()
    p = coder.pack({"t": np.array([[1, 3]])})
    assert p[:4] == b"VTP\x02"
    assert coder.state.tables == {} and np.array_equal(coder.unpack(p)["t"][0], [[1, 3]])
    with pytest.raises(VtcodecError, match="outside"):
        coder.pack({"a": np.array([[15 * 15 * 5 * 5] * 24])})


def test_forged_segment_payloads_rejected():
    coder = SegmentCoder({k: v for k, v in LV3.items() if v}, GRIDS3)
    coder.start()
    for bad, why in [(b"VTP\x03\x00", "without streams"), (b"VTP\x03\x01\x05\x01", "not in the header"),
                     (b"VTP\x03\x02\x01\x01\x00\x01", "out of order"), (b"VTP\x03\x01\x00\x00", "no rows"),
                     (b"VTP\x03\x01\x00\x80\x80\x80\x08", "more than")]:
        with pytest.raises(FormatError, match=why):
            coder.unpack(bad)
    with pytest.raises(FormatError, match="max_elements"):
        coder.unpack(b"VTP\x03\x01\x00\x03", max_elements=48)


def test_damaged_segment_payloads_fail_cleanly():
    """Bit flips and truncations give the right tokens, other tokens, or a FormatError: never
    another exception (the unit's CRC catches what decodes quietly)."""
    rng = np.random.default_rng(6)
    chunks = _chunks(rng, 2)
    payloads = _segment(chunks)
    for trial in range(300):
        p = bytearray(payloads[trial % 2])
        if trial % 3:
            p[rng.integers(4, len(p))] ^= 1 << int(rng.integers(8))
        else:
            p = p[:rng.integers(4, len(p))]
        reader = SegmentCoder({k: v for k, v in LV3.items() if v}, GRIDS3)
        reader.start()
        try:
            if trial % 2:
                reader.unpack(payloads[0])
            reader.unpack(bytes(p))
        except FormatError:
            pass
