"""Token export: `read_tokens` / `vtcodec tokens` give the streams the decoder decodes, without a model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vtcodec.cli import main
from vtcodec.codec import _key_streams
from vtcodec.models.registry import load_checkpoint
from vtcodec.tokens import read_tokens

GOLDEN = Path(__file__).parent / "golden" / "codec"


@pytest.mark.parametrize("arch", ["tivtok", "reftok", "vidtok"])
def test_read_tokens_matches_the_model_streams(arch):
    tok = load_checkpoint(GOLDEN / f"{arch}.safetensors")
    chunks = list(read_tokens(GOLDEN / f"{arch}_v2_refresh.vtk"))
    assert [c.chunk for c in chunks] == list(range(len(chunks))) and chunks[0].key
    assert sum(c.n_frames for c in chunks) == chunks[-1].first_frame + chunks[-1].n_frames
    key_names = _key_streams(tok)
    for c in chunks:
        rows = {len(v) for k, v in c.streams.items() if not (c.refreshed is not None and k in key_names)}
        assert len(rows) == 1  # every continuing stream has one row per tile
        want = tok.tokens_per_chunk(c.key)
        assert set(c.streams) == set(want) | (key_names if c.refreshed is not None else set())
        for k, v in c.streams.items():
            assert v.shape[1] == tok.tokens_per_chunk(True)[k] and c.levels[k] == tok.stream_levels[k]
            assert 0 <= v.min() and v.max() < np.prod(c.levels[k])
        if c.refreshed is not None:
            assert all(len(c.streams[k]) == len(c.refreshed) for k in key_names)
    # the golden files were written with refreshes: at least one non-key chunk restarts tiles
    assert any(c.refreshed is not None or (c.key and c.chunk) for c in chunks)


def test_read_tokens_frame_range_starts_at_a_key_chunk():
    all_chunks = list(read_tokens(GOLDEN / "vidtok.vtk"))
    last = all_chunks[-1]
    part = list(read_tokens(GOLDEN / "vidtok.vtk", start=last.first_frame))
    key = max(c.chunk for c in all_chunks if c.key and c.first_frame <= last.first_frame)
    assert [c.chunk for c in part] == list(range(key, last.chunk + 1))


def test_reading_tokens_needs_no_torch():
    code = ("import sys, vtcodec; list(vtcodec.read_tokens(sys.argv[1])); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code, str(GOLDEN / "reftok_v2_refresh.vtk")], check=True)


def test_tokens_cli_exports_npz_atomically_and_refuses_overwrite(tmp_path, capsys):
    src = GOLDEN / "reftok_v2_refresh.vtk"
    out = tmp_path / "t.npz"
    with pytest.raises(SystemExit) as e:
        main(["tokens", str(src), "-o", str(out)])
    assert e.value.code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # a plain new file, not mkstemp's private one
    with np.load(out) as z:
        header = json.loads(str(z["header"]))
        assert header["vtk"]["model"] == "reftok" and header["levels"]["target"] == [8, 8, 8, 5, 5, 5]
        chunks = list(read_tokens(src))
        assert z["chunks"].tolist() == [[c.chunk, c.first_frame, c.n_frames, int(c.key)] for c in chunks]
        for c in chunks:
            for k, v in c.streams.items():
                a = z[f"c{c.chunk:05d}/tokens/{k}"]
                assert a.dtype == np.uint16 and np.array_equal(a, v)
            if c.refreshed is not None:
                assert np.array_equal(z[f"c{c.chunk:05d}/refreshed"], c.refreshed)
    before = out.read_bytes()
    capsys.readouterr()
    for args, msg in (([str(src), "-o", str(out)], "already exists"),
                      ([str(src), "-o", str(tmp_path / "t.txt")], "writes a .npz"),
                      ([str(src), "-o", str(tmp_path / "no" / "t.npz")], "does not exist"),
                      ([str(tmp_path / "missing.vtk"), "-o", str(tmp_path / "m.npz")], "cannot open")):
        with pytest.raises(SystemExit) as e:
            main(["tokens", *args])
        err = capsys.readouterr().err
        assert e.value.code == 1 and msg in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["t.npz"]


def test_tokens_come_shaped_by_the_grids_the_encoder_recorded(tmp_path, monkeypatch):
    """Files record each stream's (T, H, W) (every shipped model's golden); older files have none
    and say so; a malformed record is a FormatError."""
    from golden.make_shipped_golden import golden_name
    from test_codec import _rewrite

    from vtcodec.container import VtkReader
    from vtcodec.errors import FormatError, VtcodecError
    from vtcodec.models.registry import PACKAGE_MODELS, list_models

    shipped = Path(__file__).parent / "golden" / "shipped"
    with monkeypatch.context() as env:  # the shipped checkpoints, not the suite's tiny ones of the same keys
        env.delenv("VTCODEC_MODELS")
        installed = [m for m in list_models() if m.path.parent == PACKAGE_MODELS]
    assert {m.key for m in installed} >= {"tivtok", "reftok", "vidtok", "vidtok-256"}
    for m in installed:
        model, path = load_checkpoint(m.path), golden_name(m.key, m.sha256)
        if model.tile == 0:  # whole frames: the token grid is the padded frame's
            with VtkReader(path) as r:
                model.set_frame(*r.header["pad_box"][2:])
        grids = model.stream_grids
        c = next(iter(read_tokens(path)))
        assert c.grids == grids, m.key
        for name, (t, h, w) in grids.items():
            assert c.shaped(name).shape == (len(c.streams[name]), t, h, w)
    # RefTok's targets: tubelets in (time, row, column) order, as the model embeds them
    from vtcodec.models.registry import build

    assert build("reftok", {}).stream_grids == {"intra": (1, 16, 16), "target": (4, 8, 8)}
    with pytest.raises(KeyError, match="no stream 'ghost'"):
        c.shaped("ghost")
    old = next(p for p in shipped.glob("reftok-*.vtk") if "-v3p2" not in p.name)
    (o,) = read_tokens(old)
    assert o.grids == {}
    with pytest.raises(VtcodecError, match="no grid recorded"):
        o.shaped("target")
    src = shipped / "reftok-e5b1553607b4-v3p2.vtk"
    for i, (lie, match) in enumerate((({"target": [4, 8]}, "stream_grids"), ({"target": [4, 8, True]}, "stream_grids"),
                                      ([4, 8, 8], "stream_grids"), ({"target": [8, 8, 8]}, "does not fit its grid"))):
        bad = tmp_path / f"bad{i}.vtk"
        _rewrite(src, bad, lambda c, us: us, header_edit=lambda h: {**h, "stream_grids": lie})
        with pytest.raises(FormatError, match=match):
            list(read_tokens(bad))


def test_a_unit_larger_than_the_header_allows_is_refused_before_decoding(tmp_path):
    """With grids and tiles in the header, a unit may hold at most tiles x (sum of T*H*W + 1)
    tokens: a forged unit of a few bytes cannot make the reader decode millions of digits."""
    from test_codec import _rewrite

    from vtcodec.container import TOKENS
    from vtcodec.errors import FormatError
    from vtcodec.packing import pack_streams

    src = Path(__file__).parent / "golden" / "shipped" / "vidtok-78a1035a6fbf-v3p2.vtk"
    huge = pack_streams({"latent": (np.zeros((1, 1 << 16), np.int64), [8, 8, 8, 5, 5, 5])}, layout="range")
    assert len(huge) < 100
    bad = tmp_path / "bad.vtk"
    _rewrite(src, bad, lambda c, us: [(t, huge if t == TOKENS else p) for t, p in us])
    with pytest.raises(FormatError, match="more than max_elements=257"):
        list(read_tokens(bad))
