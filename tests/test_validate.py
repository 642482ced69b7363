"""Issue 25's validation report, small: the set maker (vtcodec.bench.valset) on a synthetic media
tree, benchmarks/validate.py on one tiny clip with tiny models, and its equal-bits arithmetic."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import synth_frames, write_video

from vtcodec.bench import valset
from vtcodec.train.data import VAL_FRACTION
from vtcodec.video import read_frames, read_image


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


validate = _script("validate")


def _photo(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    av.VideoFrame.from_ndarray(small.repeat(16, 0).repeat(16, 1), format="rgb24").to_image().save(path)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A media tree: a held-out photograph, a training photograph, one colour video of 60 frames."""
    root = tmp_path_factory.mktemp("media")
    (root / "images").mkdir()
    _photo(root / "images" / "flower.png", 0)  # in VAL_PHOTOS
    _photo(root / "images" / "trainonly.png", 1)
    frames = synth_frames(60, 128, 128)
    write_video(root / "colour.mkv", frames)
    return root, frames


def test_valset_is_the_validation_split_only_and_deterministic(media, tmp_path):
    root, frames = media
    out = tmp_path / "val"
    manifest = valset.build(root, out, frames=8, size=64, log=lambda *_: None)
    names = [c["name"] for c in manifest]
    assert names == ["photo_flower", "video_colour_whole", "video_colour_crop", "hard_gradient", "hard_text"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    for c in manifest:
        v = read_frames(out / c["file"])
        assert v.shape == (8, 64, 64, 3)
    # The video clips start where training's split does: the first held-out frame, never earlier.
    cut = int(len(frames) * (1 - VAL_FRACTION))
    crop = read_frames(out / "video_colour_crop.mkv")
    assert np.array_equal(crop, frames[cut : cut + 8, 32:96, 32:96])
    # Same inputs, same clips.
    again = valset.photo_clip(read_image(root / "images" / "flower.png"), manifest[0]["seed"], 8, 64)
    assert np.array_equal(again, read_frames(out / "photo_flower.mkv"))
    assert np.array_equal(valset.text_clip(8, 64), valset.text_clip(8, 64))


def test_at_bpp_is_linear_in_log_bpp_and_flags_extrapolation():
    pts = [(0.01, 20.0), (0.0025, 18.0)]
    assert validate.at_bpp(pts, 0.005) == (pytest.approx(19.0), False)
    assert validate.at_bpp(pts, 0.02) == (pytest.approx(21.0), True)
    assert validate.at_bpp([(0.01, 20.0)], 0.0104) == (20.0, False)  # one point: within 5 %
    assert validate.at_bpp([(0.01, 20.0)], 0.02) == (None, True)
    cmp = validate.equal_bits({"a": pts}, {"a": [(0.005, 20.5)], "b": [(0.01, 30.0)]})
    assert list(cmp) == ["a"]
    assert cmp["a"][0]["delta_db"] == pytest.approx(1.5) and not cmp["a"][0]["extrapolated"]


def test_summarise_averages_each_clips_points_inside_the_base_curve_then_the_clips():
    base = {"a": [(0.0025, 18.0), (0.01, 20.0)], "b": [(0.0025, 10.0), (0.01, 12.0)], "c": [(0.01, 5.0)]}
    other = {"a": [(0.005, 20.0), (0.01, 21.0), (0.02, 40.0)],  # +1, +1; the last extrapolated: left out
             "b": [(0.005, 10.5)],                              # -0.5
             "c": [(0.03, 9.0)]}                                # base unreadable there: no clip figure
    sm = validate.summarise(validate.equal_bits(base, other))
    assert sm["clips"] == 2 and sm["at_or_above"] == 1
    assert sm["mean_db"] == pytest.approx(0.25) and sm["worst_db"] == pytest.approx(-0.5)
    assert validate.summarise(validate.equal_bits(base, {"c": [(0.03, 9.0)]})) is None


def test_validate_runs_the_codec_and_the_anchors(media, tmp_path, capsys):
    root, _ = media
    val = tmp_path / "val"
    valset.build(root, tmp_path / "all", frames=8, size=64, log=lambda *_: None)
    val.mkdir()
    (tmp_path / "all" / "photo_flower.mkv").rename(val / "photo_flower.mkv")
    out = tmp_path / "report.json"
    # Tiny models have no QUALITIES: --quality runs each of them once.
    rc = validate.main([str(val), "--model", "vidtok,tivtok", "--quality", "0,1", "--classical",
                        "--codecs", "x264", "--json", str(out), "--threads", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "photo_flower" in text and "mean over 1 clips" in text and "equal bits: tivtok minus vidtok" in text
    assert "gap to the classical codecs" in text
    res = json.loads(out.read_text())
    assert [(r["model"], r["quality"]) for r in res["rows"]] == [("vidtok", None), ("tivtok", None)]
    for r in res["rows"]:
        assert r["bpp"] > 0 and 0 < r["psnr"] < 60 and r["spread_ratio"] > 0
        assert math.isnan(r["seam"])  # a 64-pixel clip has no 128-pixel tile border
        assert r["grid"] > 0  # but it has 16-pixel lines
        x = r["classical"]["x264"]
        assert x["psnr"] is None or (x["scale"] in (1, 2, 4) and x["gap_db"] == pytest.approx(r["psnr"] - x["psnr"]))
    assert res["clips"]["photo_flower"]["thumbnail_floor"] > 5
    # a shipped checkpoint and a candidate of the same key are told apart by their hash
    import shutil

    from vtcodec.models.registry import resolve_model

    cand = tmp_path / "cand" / "vidtok.safetensors"
    cand.parent.mkdir()
    shutil.copyfile(resolve_model("tivtok"), cand)
    assert validate.main([str(val), "--model", f"vidtok,{cand}", "--json", str(out), "--threads", "1"]) == 0
    labels = [r["model"] for r in json.loads(out.read_text())["rows"]]
    assert len(set(labels)) == 2 and all(label.startswith("vidtok@") for label in labels)
    assert f"equal bits: {labels[1]} minus {labels[0]}" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert validate.main([str(tmp_path / "empty"), "--model", "vidtok"]) == 1
    assert "no .mkv or .mp4 clips" in capsys.readouterr().err
