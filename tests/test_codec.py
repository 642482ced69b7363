"""Tests for vtcodec.codec: round trips, random access, tiling, refresh decisions, editing, and
the refusal of every bad input with a one-line error (library and CLI).

Models are tiny random-init checkpoints (conftest.py), so nothing here judges quality: the tests
check geometry, frame counts, determinism and bitstream structure. Videos are 20 frames at most
150x70, written losslessly.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import ARCHS, NTSC, TINY, run_cli, save_tiny, synth_frames, write_video
from vtcodec import codec
from vtcodec.cli import main
from vtcodec.codec import decode_file, decode_frames, encode_file, iter_decode, load_tokenizer
from vtcodec.container import FORMAT_VERSION, SEGMENT, TOKENS, VtkReader
from vtcodec.errors import FormatError, ModelError, OutputError, VideoError, VtcodecError
from vtcodec.models.base import Tokenizer
from vtcodec.tiling import TileLayout, tile_starts, video_to_frames
from vtcodec.tokens import chunks_of
from vtcodec.train.preview import write_png
from vtcodec.video import VideoWriter, probe, read_frames

pytestmark = pytest.mark.usefixtures("one_thread")

N_FRAMES = 20  # chunks of 8: [0, 8) [8, 16) [16, 20)
# (width, height): odd and smaller than a tile (padding only); odd, padded in height and two tiles
# wide; more than one tile both ways (overlap blending)
SIZES = [(45, 33), (97, 61), (150, 70)]
TILES = {(45, 33): 1, (97, 61): 2, (150, 70): 6}


# --- shared encodings --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coded(tmp_path_factory, models_dir):
    """coded(arch, width, height) -> (source video, .vtk, source frames), encoded once per module.

    segment_chunks=2 and no adaptive refresh: keys at chunks 0 and 2 of the three.
    """
    root = tmp_path_factory.mktemp("coded")
    cache: dict = {}

    def get(arch: str, width: int = 97, height: int = 61):
        k = (arch, width, height)
        if k not in cache:
            frames = synth_frames(N_FRAMES, width, height)
            src = write_video(root / f"{arch}_{width}x{height}.mkv", frames)
            vtk = root / f"{arch}_{width}x{height}.vtk"
            encode_file(src, vtk, model=models_dir / f"{arch}.safetensors", device="cpu",
                        segment_chunks=2, refresh_db=None, overlap=16)  # blended seams exercised
            cache[k] = (src, vtk, frames)
        return cache[k]

    return get


@pytest.fixture(scope="module")
def full(coded):
    """full(arch, w, h) -> the whole video decoded, once per module."""
    cache: dict = {}

    def get(arch: str, width: int = 97, height: int = 61) -> np.ndarray:
        k = (arch, width, height)
        if k not in cache:
            cache[k] = decode_frames(coded(arch, width, height)[1], device="cpu")
        return cache[k]

    return get


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("width,height", SIZES, ids=lambda v: str(v))
@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_geometry_and_index(arch, width, height, coded, full, tmp_path):
    _, vtk, _ = coded(arch, width, height)
    with VtkReader(vtk) as r:
        h, index = r.header, r.index
        r.verify()
    assert h["model"] == arch and h["arch"] == arch
    assert (h["width"], h["height"], h["frame_count"], h["fps"]) == (width, height, N_FRAMES, "30000/1001")
    assert [(e.first_frame, e.n_frames, e.key) for e in index] == [(0, 8, True), (8, 8, False), (16, 4, True)]
    if arch == "convtok":  # whole frames: one tile, padded to a multiple of 16
        assert (h["tile"], h["overlap"], h["tiles"], h["pad_box"]) == (0, 0, 1, [0, 0, -(-height // 16) * 16,
                                                                                 -(-width // 16) * 16])
    else:
        layout = TileLayout(height, width, 64, 16)
        assert h["tiles"] == layout.count == TILES[width, height]

    frames = full(arch, width, height)
    assert frames.shape == (N_FRAMES, height, width, 3) and frames.dtype == np.uint8

    out = tmp_path / "out.mkv"
    res = decode_file(vtk, out, device="cpu", lossless=True)
    assert (res.frames, res.width, res.height) == (N_FRAMES, width, height)
    info = probe(out)
    assert (info.frame_count, info.width, info.height, info.fps) == (N_FRAMES, width, height, NTSC)
    assert np.array_equal(read_frames(out), frames)  # lossless output holds exactly the decoded frames


@pytest.mark.parametrize("width,height", SIZES, ids=lambda v: str(v))
@pytest.mark.parametrize("arch", ARCHS)
def test_encode_and_decode_are_deterministic(arch, width, height, coded, full, tmp_path, models_dir):
    src, vtk, _ = coded(arch, width, height)
    again = tmp_path / "again.vtk"
    res = encode_file(src, again, model=arch, device="cpu", segment_chunks=2, refresh_db=None, overlap=16)
    assert again.read_bytes() == vtk.read_bytes()
    # the token count is what the model promises per tile: 2 key chunks and 1 following chunk
    tok = load_tokenizer(models_dir / f"{arch}.safetensors", device="cpu")
    layout = TileLayout(height, width, tok.tile, 16 if tok.tile else 0)
    tok.set_frame(*layout.padded)
    per_key, per_next = sum(tok.tokens_per_chunk(True).values()), sum(tok.tokens_per_chunk(False).values())
    tiles = layout.count
    assert (res.frames, res.chunks, res.key_chunks) == (N_FRAMES, 3, 2)
    assert res.tokens == tiles * (2 * per_key + per_next)
    assert res.bytes == vtk.stat().st_size
    assert res.bpp == pytest.approx(8 * res.bytes / (N_FRAMES * width * height))
    # decoding twice (and with an explicitly loaded model) gives identical frames
    assert np.array_equal(decode_frames(vtk, device="cpu"), full(arch, width, height))
    assert np.array_equal(decode_frames(vtk, model=tok), full(arch, width, height))


@pytest.mark.parametrize("start,stop", [(0, 20), (0, 5), (3, 13), (9, 15), (8, 16), (12, None),
                                        (16, 20), (17, 19), (19, 20), (5, 400)])
@pytest.mark.parametrize("arch", ARCHS)
def test_range_decode_equals_slice_of_full_decode(arch, start, stop, coded, full):
    _, vtk, _ = coded(arch, 150, 70)
    want = full(arch, 150, 70)[start:stop]
    got = decode_frames(vtk, start=start, stop=stop, device="cpu")
    assert got.shape == want.shape
    assert np.array_equal(got, want)


def test_range_decode_reads_from_the_last_key_chunk(coded):
    """Frames of the last (key) chunk need none of the earlier chunks' units."""
    _, vtk, _ = coded("tivtok", 150, 70)
    with VtkReader(vtk) as r:
        last = list(r.units(17, 19))
        mid = list(r.units(9, 10))
    assert {u.chunk for u in last} == {2}
    assert last[0].type == SEGMENT
    assert {u.chunk for u in mid} == {0, 1}  # chunk 1 continues the segment started at chunk 0


def test_range_decode_file_writes_only_the_range(coded, full, tmp_path):
    _, vtk, _ = coded("reftok", 97, 61)
    out = tmp_path / "range.mkv"
    res = decode_file(vtk, out, start=9, stop=18, device="cpu", lossless=True)
    assert res.frames == 9
    assert np.array_equal(read_frames(out), full("reftok")[9:18])


@pytest.mark.parametrize("start,stop", [(20, None), (25, 30), (5, 5), (6, 2), (0, 0), (-1, 4), (0, -3)])
def test_bad_frame_range_is_a_vtcodec_error(start, stop, coded):
    _, vtk, _ = coded("vidtok")
    with pytest.raises(VtcodecError):
        decode_frames(vtk, start=start, stop=stop, device="cpu")


def test_short_last_chunk_and_single_chunk_video(tmp_path, make_video):
    src, _ = make_video("short.mkv", n=3, width=40, height=24)
    res = encode_file(src, tmp_path / "short.vtk", model="vidtok", device="cpu")
    assert (res.frames, res.chunks, res.key_chunks) == (3, 1, 1)
    assert decode_frames(tmp_path / "short.vtk", device="cpu").shape == (3, 24, 40, 3)


# --- tiling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("width,height", [(97, 61), (300, 129), (64, 64), (65, 200), (16, 16), (150, 70), (129, 64)])
@pytest.mark.parametrize("overlap", [0, 8, 16, 32])
def test_tile_split_then_merge_is_identity(width, height, overlap):
    torch.manual_seed(width * 1000 + height)
    video = torch.rand(3, 2, height, width) * 2 - 1
    layout = TileLayout(height, width, 64, overlap)
    tiles = layout.split(video)
    ys, xs = layout.starts
    assert tiles.shape == (len(ys) * len(xs), 3, 2, 64, 64) and layout.count == tiles.shape[0]
    merged = layout.merge(tiles)
    assert merged.shape == video.shape
    assert torch.allclose(merged, video, atol=1e-5)


def test_tile_blending_is_a_convex_mix_without_seams():
    """Tiles that disagree by a constant blend smoothly: every merged pixel lies between the
    tiles covering it, and neighbouring pixels differ by at most one overlap ramp step."""
    layout = TileLayout(129, 300, 64, 16)
    video = torch.zeros(3, 1, 129, 300)
    tiles = layout.split(video)
    offs = torch.arange(layout.count, dtype=torch.float32) / layout.count  # tile i reads value i/N
    merged = layout.merge(tiles + offs[:, None, None, None, None])
    assert merged.min() >= 0 and merged.max() <= offs.max() + 1e-6
    step = offs.max() / 16 + 1e-5  # a ramp across >= 16 pixels moves at most 1/16 of the largest jump
    assert (merged[:, :, :, 1:] - merged[:, :, :, :-1]).abs().max() <= step
    assert (merged[:, :, 1:] - merged[:, :, :-1]).abs().max() <= step


@pytest.mark.parametrize("tile,overlap", [(64, 0), (64, 8), (64, 16), (64, 32), (128, 16), (32, 8)])
def test_tile_starts_cover_with_requested_overlap(tile, overlap):
    for length in range(tile, 5 * tile + 7):
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == length, (length, starts)
        for a, b in zip(starts, starts[1:]):
            assert a < b and a + tile - b >= overlap, (length, starts)
    assert tile_starts(tile - 5, tile, overlap) == [0]


def test_small_frames_are_padded_by_edge_replication():
    layout = TileLayout(61, 40, 64, 16)
    assert layout.padded == (64, 64) and layout.count == 1
    video = torch.rand(3, 1, 61, 40)
    tile = layout.split(video)[0]
    assert torch.equal(tile[:, :, :61, :40], video)
    assert torch.equal(tile[:, :, 63, :40], video[:, :, 60])  # last row repeated
    assert torch.equal(tile[:, :, :61, 63], video[:, :, :, 39])  # last column repeated


# --- refresh_db: adaptive key chunks --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StubConfig:
    frames: int = 8
    tile: int = 64


class MeanColourTok(Tokenizer):
    """A transparent stand-in tokenizer: a key chunk codes each tile's mean colour, a following
    chunk codes nothing and repeats the segment's colour. So continuing across a scene cut is
    visibly wrong, and refreshing (a new key chunk) fixes it; on unchanged content both are equal."""

    arch = "meancolour"
    Config = StubConfig

    def __init__(self):
        super().__init__(StubConfig())
        self.anchor = nn.Parameter(torch.zeros(1))  # the codec finds the device from a parameter
        self.key, self.sha256 = "meancolour", "ab" * 32

    @property
    def stream_levels(self):
        return {"mean": [256], "pad": [2]}

    def tokens_per_chunk(self, key):
        return {"mean": 3, "pad": 1} if key else {"pad": 1}

    def encode_chunk(self, video, state):
        pad = torch.zeros(video.shape[0], 1, dtype=torch.int64)
        if state is None:
            idx = ((video.mean((2, 3, 4)) + 1) * 127.5).round().clamp(0, 255).long()
            return {"mean": idx, "pad": pad}, idx
        return {"pad": pad}, state

    def decode_chunk(self, streams, state):
        idx = streams["mean"] if "mean" in streams else state
        c = self.config
        video = (idx.float() / 127.5 - 1)[:, :, None, None, None].expand(-1, -1, c.frames, c.tile, c.tile)
        return video.contiguous(), idx


def _flat_cut_video(path: Path) -> np.ndarray:
    frames = np.full((32, 48, 64, 3), 40, np.uint8)
    frames[16:] = 210  # hard cut exactly half-way, at the start of chunk 2
    write_video(path, frames)
    return frames


def _keys(vtk: Path) -> list[bool]:
    with VtkReader(vtk) as r:
        return [e.key for e in r.index]


def test_refresh_db_starts_a_segment_at_a_scene_cut(tmp_path):
    src = tmp_path / "cut.mkv"
    frames = _flat_cut_video(src)
    tok = MeanColourTok()
    never = encode_file(src, tmp_path / "never.vtk", model=tok, segment_chunks=8, refresh_db=None)
    adaptive = encode_file(src, tmp_path / "adaptive.vtk", model=tok, segment_chunks=8, refresh_db=0.0)
    assert _keys(tmp_path / "never.vtk") == [True, False, False, False]
    # chunk 1 and 3 continue unchanged content (gain exactly 0 dB, not > 0): only the cut refreshes
    assert _keys(tmp_path / "adaptive.vtk") == [True, False, True, False]
    assert (never.key_chunks, adaptive.key_chunks) == (1, 2)
    # and the refresh is what makes the decoded video follow the cut
    stale = decode_frames(tmp_path / "never.vtk", model=tok)
    fresh = decode_frames(tmp_path / "adaptive.vtk", model=tok)
    assert np.array_equal(fresh, frames)
    assert np.array_equal(stale[:16], frames[:16]) and np.all(stale[16:] == 40)
    # a threshold above what the cut gains refreshes nothing; segment_chunks still forces keys
    assert encode_file(src, tmp_path / "high.vtk", model=tok, segment_chunks=8, refresh_db=1000.0).key_chunks == 1
    assert encode_file(src, tmp_path / "seg.vtk", model=tok, segment_chunks=2, refresh_db=None).key_chunks == 2
    assert _keys(tmp_path / "seg.vtk") == [True, False, True, False]


def test_refresh_decision_codes_a_key_alternative_only_where_quality_fell(tmp_path, monkeypatch):
    """Chunks that continue as well as their segment's key chunk coded are not coded a second time
    as key chunks: on the cut video only the cut chunk is (chunks 1 and 3 are unchanged content)."""
    src = tmp_path / "cut.mkv"
    _flat_cut_video(src)
    tok = MeanColourTok()
    key_codings = []
    encode = MeanColourTok.encode_chunk

    def counting(self, video, state):
        key_codings.append(state is None)
        return encode(self, video, state)

    monkeypatch.setattr(MeanColourTok, "encode_chunk", counting)
    encode_file(src, tmp_path / "adaptive.vtk", model=tok, segment_chunks=8, refresh_db=0.0)
    assert key_codings == [True, False, False, True, False]  # chunk 0; 1; 2 and its key alternative; 3
    assert _keys(tmp_path / "adaptive.vtk") == [True, False, True, False]


@pytest.mark.parametrize("arch", ARCHS)
def test_refresh_db_with_real_models(arch, tmp_path, make_video):
    src, _ = make_video("cut.mkv", n=32, width=64, height=48, cut_at=12)
    keys = {}
    for name, db in (("never", None), ("inf", float("inf")), ("zero", 0.0), ("always", -1000.0)):
        keys[name] = encode_file(src, tmp_path / f"{name}.vtk", model=arch, device="cpu",
                                 segment_chunks=8, refresh_db=db).key_chunks
    assert keys["never"] == keys["inf"] == 1
    assert keys["zero"] >= keys["never"]
    assert keys["always"] == 4  # any gain beats -1000 dB: every chunk is a key chunk
    assert _keys(tmp_path / "always.vtk") == [True] * 4
    # adaptively placed keys are real random-access points: a range from one decodes like the whole
    whole = decode_frames(tmp_path / "always.vtk", device="cpu")
    assert np.array_equal(decode_frames(tmp_path / "always.vtk", start=25, device="cpu"), whole[25:])


# --- per-tile refresh (format version 2) ------------------------------------------------------------


def _units(vtk: Path) -> list[tuple[int, int, dict]]:
    from vtcodec.tokens import unit_streams

    with VtkReader(vtk) as r:
        return [(u.type, u.chunk, {k: a for k, (a, _) in (streams or {}).items()}) for u, streams in unit_streams(r)]


def test_refresh_restarts_only_the_tiles_that_changed(tmp_path):
    """A cut in the left tile only: chunk 2 stays a non-key chunk, restarts tile 0 (its key streams
    in a SHARED unit, `refresh_tiles` = [0]) and tile 1 keeps its segment state."""
    frames = np.full((32, 48, 128, 3), 40, np.uint8)
    frames[:, :, 64:] = 120
    frames[16:, :, :64] = 210  # the cut, left tile only, at the start of chunk 2
    src = write_video(tmp_path / "halfcut.mkv", frames)
    tok = MeanColourTok()
    r = encode_file(src, tmp_path / "a.vtk", model=tok, segment_chunks=8, refresh_db=0.0, overlap=0)
    assert _keys(tmp_path / "a.vtk") == [True, False, False, False]
    assert (r.key_chunks, r.tile_refreshes) == (1, 1)
    shared = [(c, st) for t, c, st in _units(tmp_path / "a.vtk") if t == 2]
    assert [c for c, _ in shared] == [0, 2]
    assert shared[1][1]["refresh_tiles"].tolist() == [0] and shared[1][1]["mean"].shape == (1, 3)
    assert np.array_equal(decode_frames(tmp_path / "a.vtk", model=tok), frames)
    assert np.array_equal(decode_frames(tmp_path / "a.vtk", model=tok, start=20), frames[20:])


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "convtok"])  # whole frames: one tile, no partial
def test_partial_refresh_decodes_each_tile_as_its_own_coding(arch, tmp_path, make_video, monkeypatch):
    """Force a refresh of tile 0 in chunk 1 (of 3): there, tile 0 decodes as in an every-chunk-key
    file and tile 1 as in a never-refresh file; the rest matches the never-refresh file too."""
    src, _ = make_video("m.mkv", n=24, width=128, height=64)
    never = tmp_path / "never.vtk"
    encode_file(src, never, model=arch, device="cpu", segment_chunks=8, refresh_db=None, overlap=0)
    always = tmp_path / "always.vtk"
    encode_file(src, always, model=arch, device="cpu", segment_chunks=1, refresh_db=None, overlap=0)
    calls = []

    def fake_mse(recon, tiles):  # chunk 0's key, then chunk 1 continuing 20 dB worse on tile 0 only
        calls.append(0)
        return np.array([100.0, 1.0]) if len(calls) == 2 else np.array([1.0, 1.0])

    monkeypatch.setattr(codec, "_tile_mse", fake_mse)
    r = encode_file(src, tmp_path / "p.vtk", model=arch, device="cpu", segment_chunks=8, refresh_db=1.0, overlap=0)
    assert (r.key_chunks, r.tile_refreshes) == (1, 1) and _keys(tmp_path / "p.vtk") == [True, False, False]
    got = decode_frames(tmp_path / "p.vtk", device="cpu").astype(int)
    a, n = decode_frames(always, device="cpu").astype(int), decode_frames(never, device="cpu").astype(int)
    tol = 1  # batches of different sizes may round a float differently
    assert np.abs(got[8:16, :, :64] - a[8:16, :, :64]).max() <= tol
    assert np.abs(got[:, :, 64:] - n[:, :, 64:]).max() <= tol and np.abs(got[:8] - n[:8]).max() <= tol
    assert not np.array_equal(got[8:16, :, :64], n[8:16, :, :64])
    # a seek into chunk 2 decodes what the whole decode gives there; a model whose state comes from
    # its key streams alone (tivtok2) decodes chunk 2 only, taking the refreshed tile's state from chunk 1's key streams
    tok = load_tokenizer(arch, device="cpu")
    decoded = []
    plain = tok.decode_chunk
    monkeypatch.setattr(tok, "decode_chunk", lambda s, st: decoded.append(1) or plain(s, st))
    assert np.array_equal(decode_frames(tmp_path / "p.vtk", model=tok, start=16).astype(int), got[16:])
    assert len(decoded) == (1 if tok.STATE_FROM_KEY else 3 + 1)  # (the refresh decodes tile 0 and tile 1 apart)
    for start in (4, 20):  # inside the key chunk; inside chunk 2 (chunk 1 skipped where it can be)
        assert np.array_equal(decode_frames(tmp_path / "p.vtk", model=tok, start=start).astype(int), got[start:])
    if arch in ("reftok", "tivtok2"):  # editing: a restarted tile starts from the edited reference, like a key chunk
        edit = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
        got_e = np.concatenate(list(iter_decode(tmp_path / "p.vtk", reference=edit, device="cpu"))).astype(int)
        a_e = np.concatenate(list(iter_decode(always, reference=edit, device="cpu"))).astype(int)
        assert np.abs(got_e[8:16, :, :64] - a_e[8:16, :, :64]).max() <= tol
        seek_e = np.concatenate(list(iter_decode(tmp_path / "p.vtk", reference=edit, device="cpu", start=16))).astype(int)
        assert np.array_equal(seek_e, got_e[16:])  # a seek keeps the edit, skipped chunks or not


def test_partial_refresh_across_tile_batches(tmp_path):
    """Three tiles in batches of two: the first batch restarts entirely, the second continues."""
    frames = np.full((24, 48, 192, 3), 40, np.uint8)
    frames[:, :, 128:] = 120
    frames[8:, :, :128] = 210  # tiles 0 and 1 cut at chunk 1
    src = write_video(tmp_path / "cut3.mkv", frames)
    tok = MeanColourTok()
    r = encode_file(src, tmp_path / "a.vtk", model=tok, segment_chunks=8, refresh_db=0.0, overlap=0, tile_batch=2)
    assert (r.key_chunks, r.tile_refreshes) == (1, 2)
    assert np.array_equal(decode_frames(tmp_path / "a.vtk", model=tok), frames)


def _rewrite(src: Path, dst: Path, edit, version: int | None = None, header_edit=None) -> None:
    """Copy a .vtk unit by unit, letting `edit(chunk, units) -> units` change each chunk's units
    (and `header_edit(header) -> header` the header)."""
    from vtcodec.container import VtkWriter

    with VtkReader(src) as r:
        header, index = r.header, list(r.index)
        if header_edit:
            header = header_edit(header)
        chunks: dict = {}
        for u in r.units():
            chunks.setdefault(u.chunk, []).append((u.type, u.payload))
    with VtkWriter(dst, header, **({"version": version} if version else {})) as w:
        for e in index:
            w.begin_chunk(e.chunk, e.first_frame, e.n_frames, e.key)
            for t, payload in edit(e.chunk, chunks[e.chunk]):
                w.write_unit(t, payload)


def test_misplaced_partial_refresh_is_a_format_error(tmp_path):
    frames = np.full((32, 48, 128, 3), 40, np.uint8)
    frames[16:, :, :64] = 210
    src = write_video(tmp_path / "halfcut.mkv", frames)
    tok = MeanColourTok()
    good = tmp_path / "good.vtk"
    encode_file(src, good, model=tok, segment_chunks=8, refresh_db=0.0, overlap=0)
    cases = {
        "after TOKENS": lambda c, us: us[::-1] if c == 2 else us,
        "twice": lambda c, us: [us[0], *us] if c == 2 else us,
        "no TOKENS": lambda c, us: us[:1] if c == 2 else us,
    }
    for name, edit in cases.items():
        bad = tmp_path / f"{name}.vtk"
        _rewrite(good, bad, edit)
        with pytest.raises(FormatError, match=f"not a valid version-{FORMAT_VERSION} chunk"):
            decode_frames(bad, model=tok)
    _rewrite(good, tmp_path / "v1.vtk", lambda c, us: us, version=1)  # version 1 had no partial refresh
    with pytest.raises(FormatError, match="chunk 2: units SHARED are not a valid version-1 chunk"):
        decode_frames(tmp_path / "v1.vtk", model=tok)
    assert np.array_equal(decode_frames(good, model=tok), frames)


def test_stream_levels_must_match_the_model(tmp_path):
    """Indices packed under other levels would decode to other codes: a FormatError, not noise."""
    from vtcodec.packing import pack_streams
    from vtcodec.tokens import unit_streams
    frames = np.full((32, 48, 128, 3), 40, np.uint8)
    src = write_video(tmp_path / "flat.mkv", frames)
    tok = MeanColourTok()
    good = tmp_path / "good.vtk"
    encode_file(src, good, model=tok, overlap=0)

    with VtkReader(good) as r:
        chunk1 = next(s for u, s in unit_streams(r) if u.type == TOKENS and u.chunk == 1)

    def relevel(c, units):
        if c != 1:
            return units
        return [(t, pack_streams({k: (a, [4]) for k, (a, _) in chunk1.items()})) if t == TOKENS else (t, pl)
                for t, pl in units]
    _rewrite(good, tmp_path / "bad.vtk", relevel)
    with pytest.raises(FormatError, match=r"chunk 1: stream 'pad' has levels \[4\], model meancolour uses \[2\]"):
        decode_frames(tmp_path / "bad.vtk", model=tok)


def test_malformed_partial_refresh_is_a_format_error():
    from types import SimpleNamespace

    from vtcodec.tokens import _chunk
    tok, entry = MeanColourTok(), SimpleNamespace(chunk=5, first_frame=80, n_frames=16)
    tiles, mean, lv = np.array([0, 2]), np.array([[1, 2, 3], [4, 5, 6]]), [256, 256, 256]

    def chunk(shared, tokens=None):  # a non-key chunk's SHARED + TOKENS units, as unpack_streams gives them
        return _chunk(entry, False, [{k: (v, [3] if k == "refresh_tiles" else lv) for k, v in shared.items()},
                                     {k: (v, lv) for k, v in (tokens or {}).items()}])
    c = chunk({"refresh_tiles": tiles, "mean": mean})
    assert c.refreshed.tolist() == [0, 2] and "refresh_tiles" not in c.streams
    mask, streams = codec._partial_refresh(tok, c, 3, {"mean"})
    assert mask.tolist() == [True, False, True]
    assert streams["mean"][mask].tolist() == mean.tolist()  # the listed tiles' rows, in tile order
    for shared, tokens in [({"mean": mean}, None), ({"refresh_tiles": tiles[::-1], "mean": mean}, None),
                           ({"refresh_tiles": tiles, "mean": mean[:1]}, None),
                           ({"refresh_tiles": tiles, "mean": mean}, {"mean": np.zeros((3, 3), np.int64)}),
                           ({"mean": mean}, {"refresh_tiles": tiles})]:  # the tile list must be SHARED's
        with pytest.raises(FormatError, match="chunk 5: "):
            chunk(shared, tokens)
    for shared, tokens in [({"refresh_tiles": np.array([0, 3]), "mean": mean}, None),  # tile 3 of 3
                           ({"refresh_tiles": tiles}, None), ({"refresh_tiles": tiles, "extra": mean}, None),
                           ({"refresh_tiles": tiles}, {"mean": mean})]:  # key streams belong in SHARED
        with pytest.raises(FormatError, match="chunk 5: partial refresh"):
            codec._partial_refresh(tok, chunk(shared, tokens), 3, {"mean"})


def test_segment_chunks_must_be_positive(make_video, tmp_path):
    src, _ = make_video()
    with pytest.raises(VtcodecError):
        encode_file(src, tmp_path / "x.vtk", model="vidtok", device="cpu", segment_chunks=0)
    assert not (tmp_path / "x.vtk").exists()


# --- editing (reference frames) ----------------------------------------------------------------------


def test_edit_with_reference_image_changes_the_output(coded, full, tmp_path):
    _, vtk, _ = coded("reftok", 97, 61)
    plain = full("reftok")
    ref = np.zeros((30, 50, 3), np.uint8)
    ref[..., 0] = 255  # a red picture, half the size: resized to the video
    png = tmp_path / "ref.png"
    write_png(png, ref)
    with VideoWriter(f"{tmp_path}/refdir/", 50, 30, 25) as w:  # the same picture as a PNG folder
        w.write(ref[None])

    out_png, out_dir = tmp_path / "edit_png.mkv", tmp_path / "edit_dir.mkv"
    res = decode_file(vtk, out_png, reference=png, device="cpu", lossless=True)
    decode_file(vtk, out_dir, reference=f"{tmp_path}/refdir/", device="cpu", lossless=True)
    edited = read_frames(out_png)
    assert res.frames == N_FRAMES and edited.shape == plain.shape
    assert not np.array_equal(edited, plain)
    assert np.array_equal(read_frames(out_dir), edited)
    # the library path with an array gives the same frames
    arr = codec._load_reference(png, 97, 61)
    assert arr.shape == (61, 97, 3)
    assert np.array_equal(np.concatenate(list(iter_decode(vtk, reference=arr, device="cpu"))), edited)


@pytest.mark.parametrize("arch", ["tivtok", "vidtok"])
def test_edit_needs_a_reference_model(arch, coded, tmp_path):
    _, vtk, _ = coded(arch)
    png = tmp_path / "ref.png"
    write_png(png, np.zeros((61, 97, 3), np.uint8))
    out = tmp_path / "edit.mkv"
    with pytest.raises(ModelError, match=rf"model {arch} \({arch}\) has no reference frame"):
        decode_file(vtk, out, reference=png, device="cpu")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.png"]


# --- bad inputs: library and CLI ------------------------------------------------------------------


def _jpeg_bytes() -> bytes:
    import av

    c = av.CodecContext.create("mjpeg", "w")
    c.width, c.height, c.pix_fmt, c.time_base = 32, 32, "yuvj420p", Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24").reformat(format="yuvj420p")
    return b"".join(bytes(p) for p in [*c.encode(frame), *c.encode(None)])


def _write_wav(path: Path) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)


def _write_empty_video(path: Path) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()


def _write_tiny(path: Path, w: int, h: int) -> None:
    write_video(path, np.full((3, h, w, 3), 100, np.uint8))


# Bad video inputs to `encode`: name -> (make(tmp) -> src path, expected error class)
def _bad_video(name: str, tmp: Path) -> Path:
    if name == "missing":
        return tmp / "nope.mp4"
    if name == "text":
        p = tmp / "notes.txt"
        p.write_text("this is not a video\n" * 50)
        return p
    if name == "text_as_mp4":
        p = tmp / "notes.mp4"
        p.write_text("this is not a video\n" * 50)
        return p
    if name == "jpeg_as_mp4":
        p = tmp / "photo.mp4"
        p.write_bytes(_jpeg_bytes())
        return p
    if name == "audio_only":
        p = tmp / "sound.wav"
        _write_wav(p)
        return p
    if name == "zero_frames":  # a valid stream header and no frame
        p = tmp / "empty.y4m"
        p.write_bytes(b"YUV4MPEG2 W32 H32 F25:1 Ip A1:1 C420jpeg\n")
        return p
    if name == "zero_frames_mkv":  # a muxer closed before any frame
        p = tmp / "empty.mkv"
        _write_empty_video(p)
        return p
    if name == "1x1":
        p = tmp / "one.mkv"
        _write_tiny(p, 1, 1)
        return p
    if name == "3x5":
        p = tmp / "three.mkv"
        _write_tiny(p, 3, 5)
        return p
    if name == "empty_file":
        p = tmp / "zero.mp4"
        p.write_bytes(b"")
        return p
    if name == "directory":
        p = tmp / "somedir"
        p.mkdir()
        return p
    raise AssertionError(name)


BAD_VIDEOS = ["missing", "text", "text_as_mp4", "jpeg_as_mp4", "audio_only", "zero_frames", "zero_frames_mkv",
              "1x1", "3x5", "empty_file", "directory"]
BAD_VIDEO_MESSAGES = {"missing": "no such file", "jpeg_as_mp4": "still image", "audio_only": "no video stream",
                      "zero_frames": "no video frames", "1x1": "1x1", "3x5": "3x5", "directory": "directory"}


def _listing(d: Path) -> dict[str, bytes]:
    return {p.name: (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(d.rglob("*"))}


def _cli_fails(capsys, argv: list[str], *needles: str) -> str:
    code, out, err = run_cli(capsys, argv)
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.mark.parametrize("name", BAD_VIDEOS)
def test_bad_video_input_is_refused(name, tmp_path, capsys):
    src = _bad_video(name, tmp_path)
    out = tmp_path / "out.vtk"
    before = _listing(tmp_path)
    with pytest.raises(VideoError, match=BAD_VIDEO_MESSAGES.get(name)):
        encode_file(src, out, model="vidtok", device="cpu")
    _cli_fails(capsys, ["encode", src, "-o", out, "--model", "vidtok", "--device", "cpu"],
               BAD_VIDEO_MESSAGES.get(name, ""))
    assert not out.exists()
    assert _listing(tmp_path) == before  # no output, no temp file left behind


def test_output_equal_to_input_is_refused(make_video, capsys):
    src, _ = make_video("same.mkv", n=8, width=40, height=24)
    data = src.read_bytes()
    with pytest.raises(OutputError, match="is the input"):
        encode_file(src, src, model="vidtok", device="cpu", force=True)
    _cli_fails(capsys, ["encode", src, "-o", src, "--model", "vidtok", "--force"], "is the input")
    assert src.read_bytes() == data
    # decode: the output may not be the .vtk itself either
    vtk = src.with_suffix(".vtk")
    encode_file(src, vtk, model="vidtok", device="cpu")
    vdata = vtk.read_bytes()
    with pytest.raises(OutputError):
        decode_file(vtk, vtk, device="cpu", force=True)
    _cli_fails(capsys, ["decode", vtk, "-o", vtk, "--force"])
    assert vtk.read_bytes() == vdata


def test_existing_output_needs_force(make_video, tmp_path, capsys):
    src, _ = make_video("in.mkv", n=8, width=40, height=24)
    out = tmp_path / "out.vtk"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        encode_file(src, out, model="vidtok", device="cpu")
    _cli_fails(capsys, ["encode", src, "-o", out, "--model", "vidtok"], "already exists", "--force")
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv", "out.vtk"]
    # --force overwrites
    with pytest.raises(SystemExit) as e:
        main(["encode", str(src), "-o", str(out), "--model", "vidtok", "--device", "cpu", "--force"])
    assert e.value.code == 0
    assert VtkReader(out).header["frame_count"] == 8
    encode_file(src, out, model="vidtok", device="cpu", force=True)
    # decode too
    mkv = tmp_path / "dec.mkv"
    mkv.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        decode_file(out, mkv, device="cpu")
    _cli_fails(capsys, ["decode", out, "-o", mkv], "already exists")
    assert mkv.read_bytes() == b"precious"
    with pytest.raises(SystemExit) as e:
        main(["decode", str(out), "-o", str(mkv), "--device", "cpu", "--force"])
    assert e.value.code == 0 and probe(mkv).frame_count == 8


def test_output_in_missing_directory_or_unknown_kind(make_video, tmp_path, capsys):
    src, _ = make_video("in.mkv", n=8, width=40, height=24)
    with pytest.raises(OutputError):
        encode_file(src, tmp_path / "no" / "such" / "out.vtk", model="vidtok", device="cpu")
    _cli_fails(capsys, ["encode", src, "-o", tmp_path / "no" / "out.vtk", "--model", "vidtok"])
    with pytest.raises(OutputError):
        encode_file(src, tmp_path, model="vidtok", device="cpu")
    vtk = tmp_path / "ok.vtk"
    encode_file(src, vtk, model="vidtok", device="cpu")
    with pytest.raises(OutputError, match="unsupported output"):
        decode_file(vtk, tmp_path / "out.avi", device="cpu")
    _cli_fails(capsys, ["decode", vtk, "-o", tmp_path / "out.avi"], "unsupported output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv", "ok.vtk"]


def test_unknown_model_key_is_a_model_error(make_video, tmp_path, capsys):
    src, _ = make_video("in.mkv", n=8, width=40, height=24)
    with pytest.raises(ModelError, match="nosuchmodel"):
        encode_file(src, tmp_path / "o.vtk", model="nosuchmodel", device="cpu")
    _cli_fails(capsys, ["encode", src, "-o", tmp_path / "o.vtk", "--model", "nosuchmodel"], "nosuchmodel")
    _cli_fails(capsys, ["encode", src, "-o", tmp_path / "o.vtk", "--model", "vidtok", "--device", "tpu"], "tpu")
    assert not (tmp_path / "o.vtk").exists()


# Corruptions of a good .vtk: name -> bytes -> bytes
def _unit_offsets(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, payload_len) of every unit after the header, INDEX included."""
    (hlen,) = struct.unpack_from("<I", data, 10)
    pos, end, out = 18 + hlen, len(data) - 20, []
    while pos < end:
        t, n = struct.unpack_from("<BI", data, pos)
        out.append((pos, t, n))
        pos += 9 + n
    assert pos == end
    return out


def _flip(data: bytes, pos: int, bit: int = 3) -> bytes:
    b = bytearray(data)
    b[pos] ^= 1 << bit
    return bytes(b)


def _corrupt(name: str, data: bytes) -> bytes:
    units = _unit_offsets(data)
    tokens = [u for u in units if u[1] == TOKENS]
    (hlen,) = struct.unpack_from("<I", data, 10)
    if name == "bad_magic":
        return b"NOTAVTK!" + data[8:]
    if name == "png_magic":
        return b"\x89PNG\r\n\x1a\n" + data[8:]
    if name == "future_version":
        b = bytearray(data)
        struct.pack_into("<H", b, 8, FORMAT_VERSION + 1)
        return bytes(b)
    if name.startswith("truncated_"):
        at = {"0": 0, "4": 4, "13": 13, "20": 20, "header": 18 + hlen, "unit": units[1][0] + 3,
              "half": len(data) // 2, "index": units[-1][0], "m21": len(data) - 21, "m20": len(data) - 20,
              "m1": len(data) - 1}[name.split("_", 1)[1]]
        return data[:at]
    if name == "flip_header":
        return _flip(data, 14 + hlen // 2)
    if name == "flip_unit_payload":
        off, _, n = tokens[1]  # a TOKENS unit of a later chunk: decoding fails mid-way
        return _flip(data, off + 5 + n // 2)
    if name == "flip_first_unit":
        off, _, n = units[0]
        return _flip(data, off + 5 + n // 2)
    if name == "flip_unit_length":
        off, _, _ = tokens[0]
        return _flip(data, off + 1, 1)
    if name == "flip_unit_type":
        off, _, _ = tokens[0]
        return _flip(data, off, 2)
    if name == "flip_unit_crc":
        off, _, n = tokens[-1]
        return _flip(data, off + 5 + n)
    if name == "flip_index":
        off, _, _ = units[-1]
        return _flip(data, off + 9 + 12)
    if name == "flip_trailer":
        return _flip(data, len(data) - 18)
    if name == "trailing_garbage":
        return data + b"garbage"
    if name == "trailing_trailer":
        return data + data[-20:]
    if name == "text":
        return b"hello, this is just text\n" * 20
    raise AssertionError(name)


CORRUPTIONS = ["bad_magic", "png_magic", "future_version",
               *[f"truncated_{k}" for k in ("0", "4", "13", "20", "header", "unit", "half", "index", "m21", "m20", "m1")],
               "flip_header", "flip_unit_payload", "flip_first_unit", "flip_unit_length", "flip_unit_type",
               "flip_unit_crc", "flip_index", "flip_trailer", "trailing_garbage", "trailing_trailer", "text"]


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corrupt_vtk_is_refused(name, coded, tmp_path, capsys):
    _, good, _ = coded("tivtok", 150, 70)
    bad = tmp_path / "bad.vtk"
    bad.write_bytes(_corrupt(name, good.read_bytes()))
    before = _listing(tmp_path)
    with pytest.raises(FormatError) as e:
        decode_frames(bad, device="cpu")
    if name == "future_version":
        assert f"version {FORMAT_VERSION + 1}" in str(e.value) and "1, 2, 3, 4" in str(e.value)
    out = tmp_path / "out.mkv"
    with pytest.raises(VtcodecError):
        decode_file(bad, out, device="cpu", lossless=True)
    _cli_fails(capsys, ["decode", bad, "-o", out, "--device", "cpu"])
    _cli_fails(capsys, ["info", bad])
    _cli_fails(capsys, ["info", bad, "--json"])
    assert not out.exists()
    assert _listing(tmp_path) == before


def test_missing_vtk_and_png_folder_target(tmp_path, capsys):
    with pytest.raises(VtcodecError, match="cannot open"):
        decode_frames(tmp_path / "nope.vtk")
    _cli_fails(capsys, ["decode", tmp_path / "nope.vtk", "-o", f"{tmp_path}/frames/"], "nope.vtk")
    _cli_fails(capsys, ["info", tmp_path / "nope.vtk"], "nope.vtk")
    assert list(tmp_path.iterdir()) == []


def test_vtk_whose_checkpoint_is_not_installed(coded, tmp_path, monkeypatch, capsys):
    _, vtk, _ = coded("tivtok")
    sha = VtkReader(vtk).header["checkpoint_sha256"]
    empty = tmp_path / "empty_models"
    empty.mkdir()
    monkeypatch.setenv("VTCODEC_MODELS", str(empty))
    out = tmp_path / "out.mkv"
    with pytest.raises(ModelError) as e:
        decode_frames(vtk, device="cpu")
    assert "'tivtok'" in str(e.value) and sha[:16] in str(e.value)
    with pytest.raises(ModelError):
        decode_file(vtk, out, device="cpu")
    _cli_fails(capsys, ["decode", vtk, "-o", out], "tivtok", sha[:16])
    assert not out.exists()
    # info needs no model
    with pytest.raises(SystemExit) as ok:
        main(["info", str(vtk), "--json"])
    assert ok.value.code == 0


def test_vtk_whose_checkpoint_differs(coded, tmp_path, monkeypatch, capsys, models_dir):
    _, vtk, _ = coded("reftok")
    sha = VtkReader(vtk).header["checkpoint_sha256"]
    other = tmp_path / "other_models"
    new_sha = save_tiny("reftok", other / "reftok.safetensors", seed=1)  # same key, other weights
    assert new_sha != sha
    monkeypatch.setenv("VTCODEC_MODELS", str(other))
    out = tmp_path / "out.mkv"
    with pytest.raises(ModelError) as e:
        decode_frames(vtk, device="cpu")
    assert "'reftok'" in str(e.value) and sha[:16] in str(e.value)
    _cli_fails(capsys, ["decode", vtk, "-o", out], "reftok", sha[:16])
    assert not out.exists()
    # a checkpoint found under another key but with the right hash is used
    shutil.copy(models_dir / "reftok.safetensors", other / "renamed.safetensors")
    assert decode_frames(vtk, device="cpu").shape == (N_FRAMES, 61, 97, 3)


def test_edit_cli_with_wrong_model_fails_cleanly(coded, tmp_path, capsys):
    _, vtk, _ = coded("tivtok")
    png = tmp_path / "ref.png"
    write_png(png, np.zeros((20, 20, 3), np.uint8))
    out = tmp_path / "edit.mkv"
    _cli_fails(capsys, ["edit", vtk, "--reference", png, "-o", out, "--device", "cpu"], "tivtok")
    assert not out.exists()
    _cli_fails(capsys, ["edit", coded("reftok")[1], "--reference", tmp_path / "nope.png", "-o", out], "nope.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.png"]


# Headers with valid CRCs and required keys that lie about the codec's
# own fields: reading or decoding must answer with a FormatError, never a crash.
HEADER_LIES = [
    (b'"overlap":16', b'"overlap":64'),  # overlap == tile: no tile layout exists
    (b'"overlap":16', b'"overlap":99'),
    (b'"overlap":16', b'"overlap":""'),
    (b'"overlap":16', b'"overlap":{}'),
    (b'"tile_batch":8', b'"tile_batch":0'),
    (b'"width":150', b'"width":999'),
    (b'"height":70', b'"height":10'),
    (b'"chunk_frames":8', b'"chunk_frames":9'),
    (b'"tile":64', b'"tile":32'),
]


def _retag(src: Path, dst: Path, old: bytes, new: bytes) -> None:
    """Copy a .vtk with a piece of its header JSON replaced."""
    def lie(header):
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        assert text.count(old) == 1, (old, text)
        return json.loads(text.replace(old, new))
    _rewrite(src, dst, lambda c, us: us, header_edit=lie)


@pytest.mark.parametrize("old,new", HEADER_LIES, ids=[n.decode() for _, n in HEADER_LIES])
def test_header_with_bad_codec_fields_is_a_format_error(old, new, coded, tmp_path, capsys):
    _, good, _ = coded("tivtok", 150, 70)
    bad = tmp_path / "bad.vtk"
    _retag(good, bad, old, new)
    # (most of these the reader's header model refuses already, issue 23; the rest the decoder)
    with pytest.raises(FormatError):
        decode_frames(bad, device="cpu")
    out = tmp_path / "out.mkv"
    _cli_fails(capsys, ["decode", bad, "-o", out, "--device", "cpu"])
    assert not out.exists()


def test_decoding_with_the_wrong_model_is_a_format_error(coded, models_dir):
    _, vtk, _ = coded("tivtok")
    other = load_tokenizer(models_dir / "vidtok.safetensors", device="cpu")  # same tile and chunk size
    with pytest.raises(FormatError, match="streams"):
        decode_frames(vtk, model=other)


def test_decoding_with_a_checkpoint_given_by_path_or_key(coded, tmp_path, models_dir, monkeypatch):
    """decode_frames(model=...) takes a key or a .safetensors path as encode_file does: the file's
    own checkpoint decodes as if found by hash; another one is a one-line ModelError naming the
    checkpoint the file needs, not a crash."""
    _, vtk, _ = coded("reftok")
    sha = VtkReader(vtk).header["checkpoint_sha256"]
    elsewhere = tmp_path / "candidate.safetensors"
    shutil.copy(models_dir / "reftok.safetensors", elsewhere)
    want = decode_frames(vtk, device="cpu")
    assert np.array_equal(decode_frames(vtk, device="cpu", model=elsewhere), want)
    assert np.array_equal(decode_frames(vtk, device="cpu", model="reftok"), want)
    other = tmp_path / "other.safetensors"
    save_tiny("reftok", other, seed=1)
    with pytest.raises(ModelError) as e:
        decode_frames(vtk, device="cpu", model=str(other))
    assert sha in str(e.value) and "\n" not in str(e.value)


def test_encode_probes_its_source_once(tmp_path, models_dir, monkeypatch):
    """encode_file hands its probe to the reader: one pass over the source's packets, not two."""
    import vtcodec.video as video

    calls = []
    real = video.probe

    def counted(path, **kw):
        calls.append(Path(path))
        return real(path, **kw)

    monkeypatch.setattr(video, "probe", counted)
    monkeypatch.setattr(codec, "probe", counted)
    src = write_video(tmp_path / "s.mkv", synth_frames(10, 40, 32))
    r = encode_file(src, tmp_path / "o.vtk", model=models_dir / "vidtok.safetensors", device="cpu")
    assert calls == [src] and r.frames == 10
    assert decode_frames(tmp_path / "o.vtk", device="cpu").shape == (10, 32, 40, 3)


@pytest.mark.parametrize("mode", ["ref", "tiv"])
def test_convtok_edit_decodes_the_key_chunk_then_follows_the_edited_frame(mode, make_video, tmp_path):
    """ConvTok: the key chunk decodes as coded; the chunks after it are decoded against the edited
    frame (tiv: the segment's image; ref: what the next chunk continues from). A baseline-mode
    file has no reference to edit: one line."""
    from vtcodec.models.registry import build

    tok = build("convtok", {**TINY["convtok"], "mode": mode}).eval()
    tok.key, tok.sha256 = "convtok", "cd" * 32
    src, _ = make_video("m.mkv", n=24, width=64, height=48)
    vtk = tmp_path / "c.vtk"
    encode_file(src, vtk, model=tok, segment_chunks=8, refresh_db=None)
    edit = np.zeros((48, 64, 3), np.uint8)
    plain = decode_frames(vtk, model=tok)
    edited = np.concatenate(list(iter_decode(vtk, model=tok, reference=edit))).astype(int)
    f = tok.chunk_frames
    assert np.array_equal(edited[:f], plain[:f]) and not np.array_equal(edited[f:], plain[f:])
    # chunk 1 is what decoding it against the edited frame gives
    with VtkReader(vtk) as r:
        c1 = [c for c in chunks_of(r, 0, None)][1]
    state = torch.from_numpy(edit).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        tok.set_frame(48, 64)
        video, _ = tok.decode_chunk({k: torch.from_numpy(v) for k, v in c1.streams.items()}, state)
    want = video_to_frames(video[0], f)
    assert np.abs(edited[f:2 * f] - want.astype(int)).max() <= 1
    intra = build("convtok", {**TINY["convtok"], "mode": "intra"}).eval()
    intra.key, intra.sha256 = "convtok", "cd" * 32
    encode_file(src, tmp_path / "i.vtk", model=intra)
    with pytest.raises(ModelError, match="no reference frame to edit"):
        list(iter_decode(tmp_path / "i.vtk", model=intra, reference=edit))
