"""Every .vtk a shipped checkpoint ever wrote keeps decoding wherever that checkpoint is installed.

tests/golden/shipped/ holds one small .vtk per released checkpoint and packed-token version
(`make_shipped_golden.py`). Where the checkpoint is installed (the shipped ones always; a replaced
one once put in $VTCODEC_MODELS, or its `superseded/` folder, from git history) the decoder finds it
by key + sha256 and reproduces the pinned frames within 2 levels; where it is not, decoding stops
with one line naming the key and the sha256.
"""

import numpy as np
import pytest

from vtcodec.codec import decode_frames
from vtcodec.container import FORMAT_VERSION, VtkReader
from vtcodec.errors import ModelError
from vtcodec.models.registry import PACKAGE_MODELS, build_from_metadata, find_by_sha, list_models, read_metadata
from vtcodec.packing import PACKING_VERSION
from vtcodec.tokens import unit_streams

from golden.make_shipped_golden import SHIPPED, golden_name

FILES = sorted(SHIPPED.glob("*.vtk"))
pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_shipped_checkpoint_has_a_golden_file(monkeypatch):
    monkeypatch.delenv("VTCODEC_MODELS", raising=False)
    shipped = [m for m in list_models() if m.path.parent == PACKAGE_MODELS]
    assert {m.key for m in shipped} >= {"tivtok", "reftok", "vidtok", "vidtok-256"}
    missing = [m.key for m in shipped if not golden_name(m.key, m.sha256).is_file()]
    assert not missing, f"run tests/golden/make_shipped_golden.py for {missing}"


def test_todays_goldens_use_todays_versions_and_segment_coding(monkeypatch):
    """The current goldens pin today's container and packing versions: every payload is segment
    coded (version 3), holding the streams the model declares, on the grids the header records."""
    monkeypatch.delenv("VTCODEC_MODELS", raising=False)
    for m in [m for m in list_models() if m.path.parent == PACKAGE_MODELS]:
        model = build_from_metadata(read_metadata(m.path), m.path)
        with VtkReader(golden_name(m.key, m.sha256)) as r:
            if model.tile == 0:  # whole frames: the token grid is the padded frame's
                model.set_frame(*r.header["pad_box"][2:])
            assert r.version == FORMAT_VERSION
            assert {k: tuple(g) for k, g in r.header["stream_grids"].items()} == model.stream_grids, m.key
            stored = set()
            for u, streams in unit_streams(r):
                if streams is not None:
                    assert bytes(u.payload[:4]) == b"VTP" + bytes([PACKING_VERSION]), m.key
                    stored |= set(streams)
        assert stored == set(model.stream_grids), m.key


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_shipped_golden_decodes(path, monkeypatch):
    monkeypatch.delenv("VTCODEC_MODELS", raising=False)
    with VtkReader(path) as r:
        key, sha = r.header["model"], r.header["checkpoint_sha256"]
        assert f"-{sha[:12]}" in path.stem
    try:
        find_by_sha(key, sha)
    except ModelError:  # a replaced checkpoint, not installed here: one line naming what is needed
        with pytest.raises(ModelError) as e:
            decode_frames(path)
        assert key in str(e.value) and sha in str(e.value) and "\n" not in str(e.value)
        return
    want = np.load(path.with_suffix(".npz"))["frames"]
    got = decode_frames(path)
    assert got.shape == want.shape == (12, 40, 72, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 2
