"""A `.vtk` is untrusted input (issue 23): crafted files are refused with one line, quickly, and a
decode returns exactly the frames its header promises or fails.

The short fuzz run here is scripts/fuzz_vtk.py's long run in miniature: structure-aware mutations
of the codec golden files with every CRC recomputed, in-process, each case under a time limit.
Every reproducer that ever failed lives in tests/fuzz_corpus/regress/ and is replayed against all
four targets under the default limits.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from vtcodec import limits
from vtcodec.codec import iter_decode, shape_contract
from vtcodec.container import VtkReader
from vtcodec.errors import FormatError, VtcodecError
from vtcodec.packing import unpack_streams

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
REGRESS = ROOT / "tests" / "fuzz_corpus" / "regress"
GOLDEN = ROOT / "tests" / "golden" / "codec"


def _script():
    spec = importlib.util.spec_from_file_location("fuzz_vtk", ROOT / "scripts" / "fuzz_vtk.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_vtk"] = mod
    spec.loader.exec_module(mod)
    return mod


fuzz = _script()


@pytest.fixture(scope="module")
def seeds():
    return fuzz.load_seeds()


# --------------------------------------------------------------------------- kept reproducers

@pytest.mark.parametrize("target", fuzz.TARGETS)
@pytest.mark.parametrize("path", sorted(REGRESS.glob("*.vtk")), ids=lambda p: p.stem)
def test_every_kept_reproducer_is_refused_or_decodes_right(path, target, seeds, tmp_path):
    case = tmp_path / "case.vtk"
    case.write_bytes(path.read_bytes())
    t0 = time.perf_counter()
    out = fuzz.run_target(target, case, seeds, tmp_path)  # default limits; any other exception fails
    assert out in ("ok", "refused")
    assert time.perf_counter() - t0 < 2.0
    if path.stem != "empty_video_info":
        assert out == "refused"


@pytest.mark.parametrize("name,says", [("pixels_2e31", "'width'/'height'"), ("tiles_1e7", "'tiles'"),
                                       ("zstd_expands_past_declared", "zstd decompression failed"),
                                       ("zstd_declares_2gib", "more than max_elements"),
                                       ("deep_json", "nested 100001 deep"), ("width_1e400", "1e400")])
def test_acceptance_files_are_refused_in_under_a_second_with_one_line(name, says, capsys):
    t0 = time.perf_counter()
    code, out, err = run_cli(capsys, ["info", REGRESS / f"{name}.vtk"])
    assert time.perf_counter() - t0 < 1.0
    assert code == 1 and says in err and len(err.strip().splitlines()) == 1, err


def test_an_empty_video_prints_its_info(capsys):
    code, out, err = run_cli(capsys, ["info", REGRESS / "empty_video_info.vtk"])
    assert code == 0 and "no pixels" in " ".join(out.split()), (out, err)  # rich may wrap the line


def test_zstd_content_is_capped_before_inflating():
    """A 65 kB frame that honestly inflates to 2 GiB: refused by the content cap even when the
    caller allows that many indices, before any allocation."""
    payload = fuzz.payload([("latent", 0, [1, (1 << 31) // 6], [8, 8, 8, 5, 5, 5])], fuzz.zstd_frame((1 << 31) // 6 * 6))
    assert len(payload) < 70_000
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="more than the 268435456 a reader inflates"):
        unpack_streams(payload, max_elements=1 << 40)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0 and peak < 1 << 20


# ------------------------------------------------------------------------------ the header model

def test_json_depth_skips_strings_and_counts_nesting():
    assert limits.json_depth(b'{"a":"[[[[{{{","b":[[1],[2]]}') == 3
    assert limits.json_depth(b'{"a":"\\"[[["}') == 1
    assert limits.json_depth(b"[" * 1000 + b"]" * 1000) == 1000


def test_limits_are_overridable_and_checked():
    src = GOLDEN / "vidtok.vtk"  # 72x40
    VtkReader(src).close()
    with limits.using(limits.Limits(max_pixels=72 * 40 - 1)):
        with pytest.raises(FormatError, match="over the 2879-pixel limit"):
            VtkReader(src)
    VtkReader(src, limits=limits.Limits(max_pixels=72 * 40)).close()
    with pytest.raises(VtcodecError, match="max_tiles"):
        limits.Limits(max_tiles=0)


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("VTCODEC_MAX_PIXELS", "100")
    with pytest.raises(FormatError, match="over the 100-pixel limit"):
        VtkReader(GOLDEN / "vidtok.vtk")
    monkeypatch.setenv("VTCODEC_MAX_PIXELS", "lots")
    with pytest.raises(VtcodecError, match="VTCODEC_MAX_PIXELS must be a whole number"):
        VtkReader(GOLDEN / "vidtok.vtk")


@pytest.mark.parametrize("field,value,says", [
    ("tiles", 3, "'tiles' is 3"), ("pad_box", [0, 0, 64, 73], "'pad_box'"), ("overlap", 32, "'overlap'"),
    ("stream_grids", {"tv": [2, 4, 4], "tiv": [1, 8, 10 ** 5]}, "'stream_grids'"),
    ("stream_grids", {"tv": [64, 64, 64]}, "tokens per tile"), ("stream_levels", {"tv": [1]}, "'stream_levels'"),
    ("key_streams", ["tiv", "tiv"], "'key_streams'"), ("fps", "1/" + "9" * 30, "'fps'"), ("chunk_frames", 10 ** 6, "chunk_frames"),
    ("refresh_db", "1.0", "'refresh_db'"), ("model", "m" * 1000, "'model'")])
def test_codec_header_fields_are_typed_ranged_and_cross_checked(field, value, says):
    m = fuzz.parse((GOLDEN / "tivtok2.vtk").read_bytes())
    m.header[field] = value
    with pytest.raises(FormatError, match=says):
        VtkReader(io.BytesIO(fuzz.emit(m)))


# ------------------------------------------------------------------------------- shape contract

def test_shape_contract_refuses_a_short_or_misshapen_block():
    h = {"height": 40, "width": 72}
    ok = np.zeros((4, 40, 72, 3), np.uint8)
    assert shape_contract(ok, h, 8, 12, 8, "f") == 12
    for block, lo in ((ok[:3], 8), (ok[:, :39], 8), (ok.astype(np.int16), 8), (ok, 7)):
        with pytest.raises(FormatError, match="the header promises"):
            shape_contract(block, h, lo, lo + 4, 8, "f")
    with pytest.raises(FormatError, match="stopped at frame 8"):
        shape_contract(None, h, 0, 12, 8, "f")


def test_a_model_that_returns_a_frame_short_fails_the_decode(seeds, monkeypatch):
    tok = seeds.tokenizers["vidtok"]
    real = type(tok).decode_chunk

    def short(self, streams, state):
        video, state = real(self, streams, state)
        return video[:, :, :-1], state  # (N, 3, T - 1, H, W)
    monkeypatch.setattr(type(tok), "decode_chunk", short)
    with pytest.raises(FormatError, match="the header promises"):
        list(iter_decode(GOLDEN / "vidtok.vtk", model=tok, device="cpu"))


# ------------------------------------------------------------------------------ short fuzz run

# decode and read_tokens are fast in-process; info and tokens go through the CLI (rich, npz)
SHORT_TARGETS = ("decode", "read_tokens") * 3 + ("info", "tokens")


def test_short_fuzz_run_finds_no_failure(seeds):
    lines: list[str] = []
    r = fuzz.run(2000, 23, forked=False, targets=SHORT_TARGETS, seeds=seeds, report=lines.append)
    assert not r["failures"], "\n".join(lines)
    assert r["outcomes"].get("ok", 0) > 100 and r["outcomes"].get("refused", 0) > 800, r["outcomes"]
    kinds = {k.split("/")[0] for k in r["by_kind"]}
    assert kinds == set(fuzz.KINDS)
    print(json.dumps({k: v for k, v in r.items() if k != "failures"}))
