"""`vtcodec tokenize` (vtcodec.scale): a folder of clips to token shards on Ray Data, and back.

One local run (Ray in this process, 2 CPUs) on three good clips and a corrupt one feeds most
tests; the cluster test starts its own `ray start --head`, kills a run midway and reruns it.
The model is the smallest shipped one, the clips 64x64, so the file stays well under two
minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

from conftest import run_cli, synth_frames, write_video  # noqa: E402
from vtcodec import read_token_shards  # noqa: E402
from vtcodec.scale import row_chunks  # noqa: E402
from vtcodec.scale.pipeline import ERRORS, STAGING, _commit_staged, tokenize  # noqa: E402

MODEL = "vidtok-256"  # the smallest shipped checkpoint (the conftest's tiny set does not shadow it)
REPO_MODELS = Path(__file__).resolve().parents[1] / "models"


def _rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return [r for f in sorted(out.glob("shard-*.parquet")) for r in pq.read_table(f).to_pylist()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One local run: (clips folder, out folder, summary, {name: frames} of the good clips)."""
    d = tmp_path_factory.mktemp("clips")
    good = {"a.mkv": synth_frames(8, 64, 64, seed=0),
            "b.mkv": synth_frames(40, 64, 64, cut_at=20, seed=1),  # 3 chunks of 16 (the last short), a cut
            "c.mkv": synth_frames(9, 80, 48, seed=2)}
    for name, frames in good.items():
        write_video(d / name, frames)
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)  # a header, then junk
    out = tmp_path_factory.mktemp("tokens")
    summary = tokenize([d], out, model=REPO_MODELS / f"{MODEL}.safetensors", num_cpus=2, workers=2, shard_clips=2)
    return d, out, summary, good


def test_shards_hold_what_encode_and_tokens_give(run, tmp_path, capsys):
    d, out, summary, good = run
    rows = {Path(r["source"]).name: r for r in _rows(out)}
    assert sorted(rows) == sorted(good)
    assert (summary.clips, summary.frames, summary.failures) == (3, 57, 1)
    assert summary.tokens == sum(len(t) for r in rows.values() for t in r["tokens"])
    for name, row in rows.items():
        vtk, npz = tmp_path / f"{name}.vtk", tmp_path / f"{name}.npz"
        assert run_cli(capsys, ["encode", d / name, "-o", vtk, "--model", MODEL])[0] == 0
        assert run_cli(capsys, ["tokens", vtk, "-o", npz])[0] == 0
        ref = np.load(npz)
        header = json.loads(str(ref["header"]))
        assert (row["source"], row["clip_start"], row["clips_in_source"]) == (str(d / name), 0, 1)
        assert (row["frames"], row["width"], row["height"]) == (len(good[name]), good[name].shape[2], good[name].shape[1])
        assert (row["fps"], row["model"]) == (header["vtk"]["fps"], MODEL)
        assert row["checkpoint_sha256"] == header["vtk"]["checkpoint_sha256"]
        assert dict(zip(row["streams"], row["levels"])) == header["levels"]
        chunks = row_chunks(row)
        assert np.array_equal(np.array([(c.chunk, c.first_frame, c.n_frames, c.key) for c in chunks]), ref["chunks"])
        want = set(ref.files) - {"chunks", "header"}
        got = {f"c{c.chunk:05d}/tokens/{k}" for c in chunks for k in c.streams}
        got |= {f"c{c.chunk:05d}/refreshed" for c in chunks if c.refreshed is not None}
        assert got == want
        for c in chunks:
            for k, v in c.streams.items():
                assert np.array_equal(v, ref[f"c{c.chunk:05d}/tokens/{k}"].astype(np.int64)), (name, c.chunk, k)
                assert v.reshape(-1, *c.grids[k]).shape[1:] == tuple(header["vtk"]["stream_grids"][k])
    assert len(row_chunks(rows["b.mkv"])) == 3


def test_a_rows_vtk_bytes_decode(run, tmp_path, capsys):
    from vtcodec.codec import decode_frames

    d, out, _, good = run
    row = next(r for r in _rows(out) if r["source"].endswith("b.mkv"))
    vtk, ref = tmp_path / "row.vtk", tmp_path / "ref.vtk"
    vtk.write_bytes(row["vtk"])
    code, stdout, _ = run_cli(capsys, ["decode", vtk, "-o", tmp_path / "row.mkv", "--lossless"])
    assert code == 0 and "40 frames 64x64" in stdout
    assert run_cli(capsys, ["encode", d / "b.mkv", "-o", ref, "--model", MODEL])[0] == 0
    frames = decode_frames(vtk)
    assert frames.shape == good["b.mkv"].shape
    assert np.array_equal(frames, decode_frames(ref))  # the very video `vtcodec encode` would have made


def test_the_corrupt_input_is_one_line_of_errors_jsonl(run):
    d, out, _, _ = run
    lines = [json.loads(x) for x in (out / ERRORS).read_text().splitlines()]
    assert [(x["source"], x["clip_start"]) for x in lines] == [(str(d / "broken.mp4"), 0)]
    assert "broken.mp4" in lines[0]["error"]
    assert not list((out / STAGING).iterdir())  # everything committed
    assert not [f for f in out.iterdir() if f.name.endswith(".tmp")]


def test_loader_yields_numpy_batches_without_ray(run):
    _, out, _, good = run
    batches = list(read_token_shards(out, batch_size=2))
    assert sum(len(b["source"]) for b in batches) == 3
    b = batches[0]
    assert b["frames"].dtype == np.int64 and isinstance(b["vtk"][0], bytes)
    toks = b["tokens"][0]
    assert set(toks) == set(b["streams"][0]) and all(v.ndim == 2 and v.dtype == np.int64 for v in toks.values())
    assert b["chunks"][0].shape[1] == 4
    assert set(b["levels"][0]) == set(toks) and b["token_rows"][0][next(iter(toks))].sum() == len(next(iter(toks.values())))
    only = next(read_token_shards(out, columns=["source", "tokens"]))
    assert set(only) == {"source", "tokens", "streams", "token_rows"}
    # `import vtcodec` never imports ray, and the loader runs where ray cannot be imported at all
    code = ("import sys; sys.modules['ray'] = None; import vtcodec; "
            f"n = sum(len(b['source']) for b in vtcodec.read_token_shards({str(out)!r})); "
            "assert 'ray' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]; print(n)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"


def test_rerun_skips_what_is_written_and_retries_failures_once(run, capsys):
    d, out, _, _ = run
    before = sorted(f.name for f in out.glob("shard-*.parquet"))
    code, stdout, _ = run_cli(capsys, ["tokenize", d, "--out", out, "--model", MODEL, "--num-cpus", "2"])
    assert code == 0
    assert "0 clips" in stdout and "1 failures (3 inputs already done)" in stdout
    assert sorted(f.name for f in out.glob("shard-*.parquet")) == before
    assert len((out / ERRORS).read_text().splitlines()) == 1


def test_commit_keeps_whole_staged_files_and_drops_torn_ones(run, tmp_path):
    """What a killed run leaves in .staging: a finished file becomes a shard (once, however often
    committing is repeated), a torn one disappears."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, out, _, _ = run
    table = pq.read_table(sorted(out.glob("shard-*.parquet"))[0])
    table = table.append_column("error", pa.array([None] * table.num_rows, pa.string()))
    new = tmp_path / "out"
    (new / STAGING).mkdir(parents=True)
    pq.write_table(table, new / STAGING / "whole.parquet")
    data = (new / STAGING / "whole.parquet").read_bytes()
    (new / STAGING / "torn.parquet").write_bytes(data[: len(data) // 2])
    totals = _commit_staged(new)
    assert totals["clips"] == table.num_rows
    assert [f.name for f in new.glob("shard-*.parquet")] == ["shard-whole.parquet"]
    assert not list((new / STAGING).iterdir())
    (new / STAGING / "whole.parquet").write_bytes(data)  # killed between the rename and the delete
    _commit_staged(new)
    assert len(_rows(new)) == table.num_rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, head: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert head.poll() is None, "ray start --head exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"the Ray head never listened on port {port}")


def test_cluster_run_killed_midway_then_rerun_has_every_clip_once(tmp_path):
    """`ray start --head` on a free port, `vtcodec tokenize --address` killed (SIGKILL) once a
    shard is staged, then rerun: every clip of every input exactly once."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        write_video(clips / f"v{i}.mkv", synth_frames(16, 64, 64, seed=i))
    out = tmp_path / "out"
    port = _free_port()
    ray_tmp = tempfile.mkdtemp(prefix="vtr", dir="/tmp")  # unix socket paths must stay short
    # Ray clusters authenticate with a token (Ray >= 2.52): this cluster's own, in the environment
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                             f"--port={port}", "--num-cpus=2", f"--temp-dir={ray_tmp}", "--include-dashboard=false",
                             "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    cmd = [sys.executable, "-m", "vtcodec", "tokenize", str(clips), "--out", str(out), "--model", MODEL,
           "--clip-frames", "8", "--address", f"127.0.0.1:{port}", "--workers", "1", "--shard-clips", "1"]
    try:
        _wait_for_port(port, head)
        first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline:
            if list((out / STAGING).glob("*.parquet")):
                first.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        if first.poll() is None:  # no shard staged in time: stop it all the same
            first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        killed = first.returncode == -signal.SIGKILL
        if killed:  # nothing visible yet: shards appear only when their staged file is whole
            assert not list(out.glob("shard-*.parquet"))
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert second.returncode == 0, second.stderr[-2000:]
        assert "0 failures" in second.stdout
    finally:
        head.send_signal(signal.SIGTERM)  # --block: ray start stops the processes it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
    keys = sorted((Path(r["source"]).name, r["clip_start"], r["frames"]) for r in _rows(out))
    assert keys == [(f"v{i}.mkv", s, 8) for i in range(3) for s in (0, 8)]
    assert killed, "the first run finished before it could be killed"


def test_sources_expand_folders_globs_and_manifests(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vtcodec.errors import VtcodecError
    from vtcodec.scale.inputs import expand_sources

    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/a.mkv", "d/sub/b.mp4", "d/notes.txt", "c.mkv", "odd.bin"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.csv").write_text("path,caption\nc.mkv,x\nd/a.mkv,y\n")
    (tmp_path / "list.jsonl").write_text('{"path": "odd.bin"}\n\n')
    pq.write_table(pa.table({"path": [str(tmp_path / "c.mkv")]}), tmp_path / "list.parquet")
    got = expand_sources([tmp_path / "d", str(tmp_path / "*.mkv"), tmp_path / "list.csv", tmp_path / "list.jsonl",
                          tmp_path / "list.parquet", tmp_path / "odd.bin"])
    assert got == [str(tmp_path / p) for p in ("d/a.mkv", "d/sub/b.mp4", "c.mkv", "odd.bin")]  # once each, in order
    with pytest.raises(VtcodecError, match="matches no files"):
        expand_sources([str(tmp_path / "*.webm")])
    (tmp_path / "bad.csv").write_text("file\nc.mkv\n")
    with pytest.raises(VtcodecError, match="'path' column"):
        expand_sources([tmp_path / "bad.csv"])


def test_size_scales_to_cover_and_crops_the_centre():
    from vtcodec.errors import VtcodecError
    from vtcodec.scale.pipeline import fit, parse_size

    frames = synth_frames(2, 64, 32)
    assert np.array_equal(fit(frames, (32, 32)), frames[:, :, 16:48])  # no scaling needed: a centre crop
    assert fit(frames, (128, 32)).shape == (2, 32, 128, 3)  # scaled up 2x to cover the width, cropped in height
    assert parse_size("256x128") == (256, 128) and parse_size(None) is None
    with pytest.raises(VtcodecError, match="WIDTHxHEIGHT"):
        parse_size("256")
