"""Which models `vtcodec bench` runs: --ratio and --model (bench.runner.select_models)."""

from __future__ import annotations

import pytest

from conftest import run_cli
from vtcodec.bench.runner import ModelSpec, select_models
from vtcodec.errors import ModelError

HAVE = [ModelSpec("tivtok", "tivtok", 1024), ModelSpec("vidtok", "vidtok", 1024), ModelSpec("vidtok-256", "vidtok-256", 256)]


def test_model_keys_narrow_the_selection_and_combine_with_ratio():
    assert [m.key for m in select_models(HAVE, None)] == ["tivtok", "vidtok", "vidtok-256"]
    assert [m.key for m in select_models(HAVE, None, ["vidtok-256", "tivtok"])] == ["tivtok", "vidtok-256"]
    assert [m.key for m in select_models(HAVE, 1024, ["vidtok", "vidtok-256"])] == ["vidtok"]
    with pytest.raises(ModelError, match="no installed model 'reftok2'"):
        select_models(HAVE, None, ["vidtok", "reftok2"])
    with pytest.raises(ModelError, match="pixels per token"):
        select_models(HAVE, 1024, ["vidtok-256"])


def test_bench_cli_names_an_unknown_model_in_one_line(capsys, tmp_path):
    code, out, err = run_cli(capsys, ["bench", "--model", "nosuch", "--data", tmp_path])
    assert code != 0 and "no installed model 'nosuch'" in out + err


def test_family_pairs_a_later_design_with_its_paper():
    """The paper suite pairs models by family: the second TivTok design (arch tivtok2) is TivTok."""
    assert ModelSpec("tivtok", "tivtok", 1024, arch="tivtok2").family == "tivtok"
    assert ModelSpec("x", "x", 1024, arch="reftok").family == "reftok"
    assert ModelSpec("tivtok-old", "p.safetensors").family == "tivtok"


def test_convtok_modes_pair_as_their_papers_models():
    """One ConvTok network in three modes stands for TivTok, RefTok and the baseline in the paper suite."""
    from vtcodec.checkpoint_index import paired_as

    assert [paired_as("convtok", {"mode": m}) for m in ("tiv", "ref", "intra")] == ["tivtok", "reftok", "vidtok"]
    assert paired_as("convtok", '{"mode": "tiv"}') == "tivtok" and paired_as("tivtok2", "{}") == "tivtok"
    assert ModelSpec("tivtok", "tivtok", 1024, arch="convtok", paired_as="tivtok").family == "tivtok"
