"""`vtcodec train --part encoder`: the encoder-only parameters never reach the decoder, the
split RefTok encoder starts as the shared one, the training step is the codec's own chunk loop,
and a run changes the encoder-only tensors and nothing else."""

from __future__ import annotations

import fnmatch
import json
import math

import pytest
import torch
from conftest import ARCHS, TINY
from safetensors.torch import load_file

from vtcodec.models.registry import build, read_metadata, save_checkpoint, warm_start
from vtcodec.tiling import tile_mse
from vtcodec.train.losses import frames01, ssim_frames
from vtcodec.train.steps import encoder_step, in_part, part_patterns

pytestmark = pytest.mark.usefixtures("one_thread")
CASES = [("tivtok", {}), ("reftok", {}), ("reftok", {"enc_split": True}), ("reftok", {"enc_split": True, "intra_ctx": 1}),
         ("reftok", {"enc_split": True, "intra_ctx": 2}),
         ("vidtok", {}), ("tivtok2", {}), ("tivtok2", {"enc_split": True})]


def _model(arch: str, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return build(arch, {**TINY[arch], **extra}).eval()


def _clip(m, chunks: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, chunks * m.chunk_frames, m.tile, m.tile, generator=g) * 2 - 1


def _is_encoder(m, name: str) -> bool:
    return in_part(name, m.encoder_only)


def _codec_loop(m, clip):
    """What the codec does to a tile: (streams, reconstruction) per chunk, states carried."""
    f, enc, dec, out = m.chunk_frames, None, None, []
    for i in range(clip.shape[2] // f):
        streams, enc = m.encode_chunk(clip[:, :, i * f:(i + 1) * f], enc)
        video, dec = m.decode_chunk(streams, dec)
        out.append((streams, video))
    return out


@pytest.mark.parametrize("arch,extra", CASES)
def test_encoder_only_parameters_never_reach_the_decoder(arch, extra):
    m = _model(arch, **extra)
    names = [n for n, _ in m.named_parameters()]
    assert all(any(fnmatch.fnmatchcase(n, p) for n in names) for p in m.encoder_only)  # no dead pattern
    clip = _clip(m)
    with torch.no_grad():
        before = _codec_loop(m, clip)
        for n, p in m.named_parameters():
            if _is_encoder(m, n):
                p.add_(torch.randn_like(p) * 0.5)
        dec = None
        for streams, video in before:  # the same tokens decode exactly as before
            again, dec = m.decode_chunk(streams, dec)
            assert torch.equal(again, video)
        after = _codec_loop(m, clip)
    # control: the perturbation reached the encoder (the tokens changed)
    assert any(not torch.equal(a[0][k], b[0][k]) for a, b in zip(before, after) for k in a[0])


def test_split_encoder_warm_starts_as_the_shared_one(tmp_path):
    old = _model("reftok")
    save_checkpoint(old, tmp_path / "old.safetensors")
    new, fresh = warm_start(tmp_path / "old.safetensors", {"enc_split": True})
    new.eval()
    assert fresh == [] and new.config.enc_split
    copy, shared = new.tgt_enc.state_dict(), new.enc.state_dict()
    assert copy.keys() == shared.keys() and all(torch.equal(copy[k], shared[k]) for k in copy)
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(new.tgt_enc.parameters(), new.enc.parameters()))  # a copy
    clip = _clip(old)
    with torch.no_grad():
        for (sa, va), (sb, vb) in zip(_codec_loop(old, clip), _codec_loop(new, clip)):
            assert all(torch.equal(sa[k], sb[k]) for k in sa) and torch.allclose(va, vb, atol=1e-6)


@pytest.mark.parametrize("ctx", [0, 1, 2])
def test_intra_encoder_sees_the_chunk_only_with_intra_ctx(ctx, tmp_path):
    """intra_ctx 1 and 2: the intra tokens depend on the chunk's later frames too, through
    embeddings that start at zero (a warm start codes exactly as the model it extends); intra_ctx
    0: on frame 0 alone."""
    old = _model("reftok")
    save_checkpoint(old, tmp_path / "old.safetensors")
    m, fresh = warm_start(tmp_path / "old.safetensors", {"intra_ctx": ctx})
    m.eval()
    clip = _clip(m, chunks=1)
    later = clip.clone()
    later[:, :, 1:] = -later[:, :, 1:]  # the same frame 0, other frames after it
    with torch.no_grad():
        assert torch.equal(m.encode_chunk(clip, None)[0]["intra"], old.encode_chunk(clip, None)[0]["intra"])
        if ctx:
            new = [f"intra.{e}.{t}" for e in ("ctx_embed", "ctx_quarters")[:ctx] for t in ("bias", "weight")]
            assert sorted(fresh) == sorted(new)
            (m.intra.ctx_quarters if ctx == 2 else m.intra.ctx_embed).weight.normal_(0, 0.5)
        a, b = m.encode_chunk_latents(clip, None)[0]["intra"], m.encode_chunk_latents(later, None)[0]["intra"]
    assert torch.equal(a, b) != bool(ctx)


@pytest.mark.parametrize("arch,extra", CASES)
def test_encoder_step_is_the_codec_loop(arch, extra):
    """At slope 0 the step's reconstruction is the codec's, chunk by chunk with the states carried,
    and its loss is the mean over tile-chunks of 10 log10(MSE), the search's objective."""
    m = _model(arch, **extra)
    clip = _clip(m)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        loss, recon, target, logs = encoder_step(m, clip, g, slope=0.0)
        codec = _codec_loop(m, clip)
    f = m.chunk_frames
    ref = torch.cat([v.clamp(-1, 1) for _, v in codec], dim=2)
    assert torch.equal(target, clip) and torch.allclose(recon, ref, atol=1e-5)
    db = torch.stack([10 * torch.log10(tile_mse(v, clip[:, :, i * f:(i + 1) * f])) for i, (_, v) in enumerate(codec)])
    assert loss.item() == pytest.approx(db.mean().item(), abs=1e-4)
    assert logs["soft_bits"] > 0 and 0 < logs["ssim"] <= 1
    assert logs["ssim"] == pytest.approx(ssim_frames(frames01(recon), frames01(clip)).item(), abs=1e-6)  # the clip's
    # the rate term: the same tokens at slope 3 cost 3 * mean log2(bits) more
    with torch.no_grad():
        loss3 = encoder_step(m, clip, g, slope=3.0)[0]
    assert loss3.item() > loss.item() + 3 * math.log2(logs["soft_bits"]) * 0.5
    # the structural term: each tile-chunk's 10 log10(1 - SSIM) of the clamped output, weighted; a
    # random model's SSIM is near 0, so a large weight makes per-tile vs pooled (1e-5 apart) visible
    with torch.no_grad():
        loss_s = encoder_step(m, clip, g, slope=0.0, ssim_weight=100.0)[0]
    dis = torch.stack([torch.stack([10 * torch.log10(1 - ssim_frames(frames01(v[j:j + 1].clamp(-1, 1)),
                                                                     frames01(clip[j:j + 1, :, i * f:(i + 1) * f])))
                                    for j in range(clip.shape[0])]) for i, (_, v) in enumerate(codec)])
    assert (loss_s.item() - loss.item()) / 100 == pytest.approx(dis.mean().item(), abs=1e-6)


@pytest.mark.parametrize("arch,extra", CASES)
def test_open_loop_encoding_sends_the_same_latents(arch, extra):
    """closed_loop=False (the caller takes the decoder's state) changes no latent, and the state
    that next_encoder_state then gives is the closed-loop one; RefTok skips its decode (None)."""
    m = _model(arch, **extra)
    clip = _clip(m, chunks=1)
    with torch.no_grad():
        lat, es = m.encode_chunk_latents(clip, None)
        lat_o, es_o = m.encode_chunk_latents(clip, None, closed_loop=False)
        _, ds = m.decode_chunk_codes({k: m.quant(z) for k, z in lat.items()}, None)
    assert lat.keys() == lat_o.keys() and all(torch.equal(lat[k], lat_o[k]) for k in lat)
    assert (es_o is None) == (arch == "reftok")
    assert torch.allclose(m.next_encoder_state(es_o, ds), es, atol=1e-6)


def test_part_encoder_trains_the_encoder_only(tmp_path, capsys):
    from test_train import TINY_REF, tiny_reftok_run

    from vtcodec.cli import main

    base, init = tiny_reftok_run(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(base + ["--init", str(init), "--config", '{"enc_split": true}', "--part", "encoder", "--recipe", '{"slope": 2}',
                     "--out", str(tmp_path / "enc"), "--steps", "2", "--lr", "1e-2"])
    assert e.value.code == 0
    out = tmp_path / "enc" / "model.safetensors"
    before, after = load_file(init), load_file(out)
    model = build("reftok", {**json.loads(TINY_REF), "enc_split": True})
    changed = {k for k in after if k not in before or not torch.equal(before[k], after[k])}
    assert {k for k in changed if k.startswith("tgt_enc.")} and {k for k in changed if k.startswith("intra.enc.")}
    assert all(_is_encoder(model, k) for k in changed)  # everything the decoder reads is as loaded
    info = json.loads(read_metadata(out)["info"])
    assert info["recipe"] == {"slope": 2, "ssim_weight": 0.0, "sat_weight": 0.0, "spread_weight": 0.0, "part": "encoder"} and info["fresh_from_init"] == []
    log = [json.loads(line) for line in (tmp_path / "enc" / "log.jsonl").read_text().splitlines()]
    assert math.isfinite(log[-1]["val_psnr"]) and log[-1]["soft_bits"] > 0 and log[-1]["val_soft_bits"] > 0
    capsys.readouterr()
    for extra, msg in ((["--recipe", '{"slope": -1}'], "finite number >= 0"),
                       (["--recipe", '{"near_p": 0.5}'], "reftok --part encoder has no knob")):
        with pytest.raises(SystemExit) as e:
            main(base + ["--init", str(init), "--part", "encoder", *extra, "--out", str(tmp_path / "bad"), "--steps", "1"])
        assert e.value.code == 1 and msg in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def test_part_codec_trains_the_decoder_too_on_the_codec_loop(tmp_path):
    from test_train import tiny_reftok_run

    from vtcodec.cli import main

    base, init = tiny_reftok_run(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(base + ["--init", str(init), "--part", "codec", "--out", str(tmp_path / "all"), "--steps", "2", "--lr", "1e-2"])
    assert e.value.code == 0
    before, after = load_file(init), load_file(tmp_path / "all" / "model.safetensors")
    model = build("reftok", {})
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(not _is_encoder(model, k) for k in changed) and any(k.startswith("intra.dec.") for k in changed)
    log = [json.loads(line) for line in (tmp_path / "all" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["soft_bits"] > 0 and "mse_db" in log[-1]  # encoder_step's figures


def test_part_patterns_name_the_part():
    m = _model("reftok")
    assert part_patterns(m, "intra") == ("intra.*",) and part_patterns(m, "encoder") == m.encoder_only
    assert part_patterns(m, "codec") == ("*",) and all(in_part(n, ("*",)) for n, _ in m.named_parameters())
    assert "tgt_enc.*" not in m.encoder_only and "tgt_enc.*" in _model("reftok", enc_split=True).encoder_only
