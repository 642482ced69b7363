"""Every .vtk a shipped checkpoint ever wrote keeps decoding with the installed models.

tests/golden/shipped/ holds one small .vtk per released checkpoint and packed-token version
(`make_shipped_golden.py`). The decoder must still find that checkpoint by key + sha256 -- in
models/, or in models/superseded/ once a retrained one took its key -- and reproduce the pinned
frames within 2 levels.
"""

import numpy as np
import pytest

from vtcodec.codec import decode_frames
from vtcodec.container import FORMAT_VERSION, VtkReader
from vtcodec.models.registry import REPO_MODELS, list_models
from vtcodec.packing import PACKING_VERSION, payload_layouts

from golden.make_shipped_golden import SHIPPED, golden_name

FILES = sorted(SHIPPED.glob("*.vtk"))
pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_shipped_checkpoint_has_a_golden_file(monkeypatch):
    monkeypatch.delenv("VTCODEC_MODELS", raising=False)
    shipped = [m for m in list_models() if m.path.parent == REPO_MODELS]
    assert {m.key for m in shipped} >= {"tivtok", "reftok", "vidtok", "vidtok-256"}
    missing = [m.key for m in shipped if not golden_name(m.key, m.sha256).is_file()]
    assert not missing, f"run tests/golden/make_shipped_golden.py for {missing}"


def test_todays_goldens_use_todays_versions_and_range_coding():
    """The current goldens pin today's container and packing versions, and real tokens do take
    the range-coded layout."""
    layouts = set()
    paths = list(SHIPPED.glob(f"*-v{FORMAT_VERSION}p{PACKING_VERSION}.vtk"))
    assert len(paths) >= 4
    for path in paths:
        with VtkReader(path) as r:
            assert r.version == FORMAT_VERSION
            for u in r.units():
                if u.type in (2, 3):
                    assert bytes(u.payload[:4]) == b"VTP" + bytes([PACKING_VERSION])
                    layouts.update(payload_layouts(u.payload).values())
    assert "range" in layouts


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_shipped_golden_decodes(path, monkeypatch):
    monkeypatch.delenv("VTCODEC_MODELS", raising=False)
    with VtkReader(path) as r:
        assert f"-{r.header['checkpoint_sha256'][:12]}" in path.stem
    want = np.load(path.with_suffix(".npz"))["frames"]
    got = decode_frames(path)
    assert got.shape == want.shape == (12, 40, 72, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 2
