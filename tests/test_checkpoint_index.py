"""`vtcodec models` without torch: the header-and-cache listing agrees with the registry's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vtcodec import checkpoint_index as ci
from vtcodec.errors import ModelError
from vtcodec.models import registry


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_listing_equals_the_registrys():
    want = [(m.key, m.path, m.arch, m.pixels_per_token, m.params, m.sha256, m.size_bytes) for m in registry.list_models()]
    for _ in range(2):  # built and cached, then from the cache
        got = [(m.key, m.path, m.arch, m.pixels_per_token, m.params, m.sha256, m.size_bytes)
               for m in ci.list_checkpoints()]
        assert got == want and got
    assert ci.cache_path().is_file()


def test_a_cached_listing_imports_no_torch(models_dir):
    code = ("import sys; from vtcodec.checkpoint_index import list_checkpoints; "
            "print(len(list_checkpoints()), 'torch' in sys.modules)")
    env = {**os.environ, "VTCODEC_MODELS": str(models_dir)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    n = str(len(registry.list_models()))
    assert first.stdout.split() == [n, "True"]  # nothing cached: the models were built
    assert again.stdout.split() == [n, "False"]


def test_a_replaced_checkpoint_is_read_again(tmp_path, monkeypatch):
    from conftest import save_tiny

    d = tmp_path / "m"
    d.mkdir()
    monkeypatch.setenv("VTCODEC_MODELS", str(d))
    save_tiny("vidtok", d / "a.safetensors")
    first = {m.key: m for m in ci.list_checkpoints()}["a"]
    sha = save_tiny("tivtok", d / "a.safetensors", seed=1)
    second = {m.key: m for m in ci.list_checkpoints()}["a"]
    assert (first.arch, second.arch) == ("vidtok", "tivtok") and second.sha256 == sha
    (d / "a.safetensors").unlink()
    assert "a" not in {m.key for m in ci.list_checkpoints()}
    cached = json.loads(ci.cache_path().read_text())["files"]
    assert str(d / "a.safetensors") not in cached  # entries of removed files are dropped on the next write


def test_an_unreadable_cache_is_rebuilt():
    ci.cache_path().parent.mkdir(parents=True)
    ci.cache_path().write_text("{not json")
    assert [m.key for m in ci.list_checkpoints()] == [m.key for m in registry.list_models()]
    assert json.loads(ci.cache_path().read_text())["version"] == ci.CACHE_VERSION


@pytest.mark.parametrize("blob, what", [
    (b"", "header length -1"),
    ((10**9).to_bytes(8, "little"), "header length 1000000000"),
    ((40).to_bytes(8, "little") + b'{"a": 1}', "truncated or malformed"),
    ((8).to_bytes(8, "little") + b"[1, 2]  ", "truncated or malformed"),
])
def test_a_bad_file_is_a_model_error(tmp_path, blob, what):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(blob)
    with pytest.raises(ModelError, match=what):
        ci.read_header(p)


def test_metadata_that_is_not_vtcodecs_is_refused(tmp_path, monkeypatch):
    text = json.dumps({"__metadata__": {"format": "pt"}}).encode()
    (tmp_path / "x.safetensors").write_bytes(len(text).to_bytes(8, "little") + text)
    monkeypatch.setenv("VTCODEC_MODELS", str(tmp_path))
    with pytest.raises(ModelError, match="lacks 'arch'/'config'"):
        ci.list_checkpoints()
