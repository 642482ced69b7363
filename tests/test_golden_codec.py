"""Bitstreams written by this version must keep decoding: golden .vtk files made with tiny checkpoints.

The files in tests/golden/codec/ were written by `make_codec_golden.py` (regenerated only on
purpose). A decoder must find the checkpoint by key + sha256, reproduce the decoded frames (within
2 levels: float kernels may differ between CPUs and torch builds, the bitstream may not), and a
fresh encode of the same source must produce the same tokens.
"""

import numpy as np
import pytest

from vtcodec.codec import decode_frames, encode_file
from vtcodec.container import VtkReader
from vtcodec.models.registry import sha256_file
from vtcodec.tokens import unit_streams

from golden.make_codec_golden import HERE, source_frames

D = HERE / "codec"
ARCHS = ("tivtok", "tivtok2", "reftok", "vidtok")
# the format version the writer had when an arch's golden files were made (tivtok2 came later)
MADE_AT = {"tivtok2": 3}
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _golden_models(monkeypatch):
    monkeypatch.setenv("VTCODEC_MODELS", str(D))


def _tokens(path):
    with VtkReader(path) as r:
        return [(u.chunk, k, v) for u, streams in unit_streams(r) if streams for k, (v, _) in streams.items()]


@pytest.mark.parametrize("arch", ARCHS)
def test_golden_header(arch):
    with VtkReader(D / f"{arch}.vtk") as r:
        h = r.header
        assert (h["model"], h["arch"]) == (arch, arch)
        assert h["checkpoint_sha256"] == sha256_file(D / f"{arch}.safetensors")
        assert (h["width"], h["height"], h["fps"], h["frame_count"], h["chunk_frames"]) == (72, 40, "25/1", 12, 8)
        assert (h["tile"], h["overlap"], h["tiles"]) == (64, 16, 2)
        assert [(e.first_frame, e.n_frames, e.key) for e in r.index] == [(0, 8, True), (8, 4, True)]


@pytest.mark.parametrize("arch", ARCHS)
def test_golden_decodes_to_pinned_frames(arch):
    want = np.load(D / f"{arch}_decoded.npy")
    got = decode_frames(D / f"{arch}.vtk")
    assert got.shape == want.shape == (12, 40, 72, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 2


@pytest.mark.parametrize("arch", ARCHS)
def test_reencode_gives_golden_tokens(arch, tmp_path):
    encode_file(D / "source.mkv", tmp_path / "o.vtk", model=arch, segment_chunks=1, overlap=16)
    got, want = _tokens(tmp_path / "o.vtk"), _tokens(D / f"{arch}.vtk")
    assert [(c, k) for c, k, _ in got] == [(c, k) for c, k, _ in want]
    same = sum(int((a == b).sum()) for (_, _, a), (_, _, b) in zip(got, want))
    total = sum(b.size for _, _, b in want)
    assert same / total >= 0.99  # an FSQ rounding boundary may flip a rare index on another CPU


def test_golden_source_is_what_the_generator_makes():
    from vtcodec.video import read_frames

    assert np.array_equal(read_frames(D / "source.mkv"), source_frames())


@pytest.mark.parametrize("arch", ARCHS)
def test_golden_v2_partial_refresh(arch):
    """Format version 2 (3 for tivtok2): chunk 1 restarts tile 0 only (a SHARED unit in a non-key chunk)."""
    path = D / f"{arch}_v2_refresh.vtk"
    with VtkReader(path) as r:
        assert r.version == MADE_AT.get(arch, 2) and [e.key for e in r.index] == [True, False]
        shared = [streams for u, streams in unit_streams(r) if u.type == 2 and u.chunk == 1]
    assert len(shared) == 1 and shared[0]["refresh_tiles"][0].tolist() == [0]
    want = np.load(D / f"{arch}_v2_refresh_decoded.npy")
    got = decode_frames(path)
    assert got.shape == want.shape == (12, 40, 72, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 2
    # version-1 goldens stay version 1
    with VtkReader(D / f"{arch}.vtk") as r:
        assert r.version == MADE_AT.get(arch, 1)
