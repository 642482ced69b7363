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
from vtcodec.packing import PACKING_VERSION, payload_layouts

from golden.make_shipped_golden import SHIPPED, golden_name

FILES = sorted(SHIPPED.glob("*.vtk"))
pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_shipped_checkpoint_has_a_golden_file(monkeypatch):
    monkeypatch.delenv("VTCODEC_MODELS", raising=False)
    shipped = [m for m in list_models() if m.path.parent == PACKAGE_MODELS]
    assert {m.key for m in shipped} >= {"tivtok", "reftok", "vidtok", "vidtok-256"}
    missing = [m.key for m in shipped if not golden_name(m.key, m.sha256).is_file()]
    assert not missing, f"run tests/golden/make_shipped_golden.py for {missing}"


def test_todays_goldens_use_todays_versions_and_range_coding(monkeypatch):
    """The current goldens pin today's container and packing versions; real tokens take the
    range-coded layout, on the grids the model declares. (The encoder keeps the smallest layout, so
    which streams take it depends on the checkpoint and this tiny clip: a new checkpoint's golden
    file can change this set; update it then, after looking at why.)"""
    monkeypatch.delenv("VTCODEC_MODELS", raising=False)
    ranged = []
    for m in [m for m in list_models() if m.path.parent == PACKAGE_MODELS]:
        model = build_from_metadata(read_metadata(m.path), m.path)
        with VtkReader(golden_name(m.key, m.sha256)) as r:
            if model.tile == 0:  # whole frames: the token grid is the padded frame's
                model.set_frame(*r.header["pad_box"][2:])
            grids = model.stream_grids
            assert r.version == FORMAT_VERSION
            stored = {}
            for u in r.units():
                if u.type in (2, 3):
                    assert bytes(u.payload[:4]) == b"VTP" + bytes([PACKING_VERSION])
                    stored.update(payload_layouts(u.payload))
        assert set(stored) == set(grids), m.key
        for k, (lay, g) in stored.items():
            if lay == "range":
                assert g == grids[k], (m.key, k)
                ranged.append((m.key, k))
    assert {key for key, _ in ranged} == {"convtok", "reftok", "tivtok"}, ranged


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
