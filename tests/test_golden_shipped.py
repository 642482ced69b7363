"""Every .vtk a shipped checkpoint ever wrote keeps decoding with the installed models.

tests/golden/shipped/ holds one small .vtk per released checkpoint (`make_shipped_golden.py`). The
decoder must still find that checkpoint by key + sha256 -- in models/, or in models/superseded/
once a retrained one took its key -- and reproduce the pinned frames within 2 levels.
"""

import numpy as np
import pytest

from vtcodec.codec import decode_frames
from vtcodec.container import VtkReader
from vtcodec.models.registry import REPO_MODELS, list_models

from golden.make_shipped_golden import SHIPPED

FILES = sorted(SHIPPED.glob("*.vtk"))
pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_shipped_checkpoint_has_a_golden_file(monkeypatch):
    monkeypatch.delenv("VTCODEC_MODELS", raising=False)
    shipped = [m for m in list_models() if m.path.parent == REPO_MODELS]
    assert {m.key for m in shipped} >= {"tivtok", "reftok", "vidtok", "vidtok-256"}
    missing = [m.key for m in shipped if not (SHIPPED / f"{m.key}-{m.sha256[:12]}.vtk").is_file()]
    assert not missing, f"run tests/golden/make_shipped_golden.py for {missing}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_shipped_golden_decodes(path, monkeypatch):
    monkeypatch.delenv("VTCODEC_MODELS", raising=False)
    with VtkReader(path) as r:
        assert path.stem.endswith(r.header["checkpoint_sha256"][:12])
    want = np.load(path.with_suffix(".npz"))["frames"]
    got = decode_frames(path)
    assert got.shape == want.shape == (12, 40, 72, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 2
