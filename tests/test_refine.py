"""Encoder-side refinement (src/vtcodec/refine.py) on tiny random-init models of every architecture.

What it promises: the encoder's own tokens at 0 steps; per tile, never a worse error than those
tokens (and, on a random model, a strictly better one somewhere, so the search is not a no-op);
a closed loop (what the encoder carries to the next chunk is what the decoder will hold); and a
file that decodes with the unchanged decoder.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import ARCHS, TINY, synth_frames, write_video

ARCHS = tuple(a for a in ARCHS if a != "convtok")  # whole-frame models expose no latents to refine
from vtcodec.bench.metrics import psnr_rgb
from vtcodec.codec import _Batches, _code_chunk, decode_frames, encode_file
from vtcodec.errors import VtcodecError
from vtcodec.models.registry import build
from vtcodec import entropy
from vtcodec.refine import DEFAULT_LR, contexts, refine_latents, soft_bits, tile_bits

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(arch: str):
    torch.manual_seed(0)
    return build(arch, TINY[arch]).eval()


def _video(m, b: int = 2, chunks: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, chunks * m.chunk_frames, m.tile, m.tile, generator=g) * 2 - 1


def _refined(arch: str, b: int, seed: int, steps: int, slope: float = 0.0):
    """A key chunk of random video refined on a tiny model: (model, video, streams, objective, decoded)."""
    m = _model(arch)
    x = _video(m, b=b, seed=seed)
    with torch.no_grad():
        latents, _ = m.encode_chunk_latents(x, None)
        streams, err = refine_latents(m, x, latents, None, steps=steps, slope=slope)
        out, _ = m.decode_chunk(streams, None)
    return m, x, streams, err, out


@pytest.mark.parametrize("arch", ARCHS)
def test_encode_chunk_is_the_quantized_latents(arch):
    m = _model(arch)
    x = _video(m)
    with torch.no_grad():
        streams, _ = m.encode_chunk(x, None)
        latents, _ = m.encode_chunk_latents(x, None)
        same, err = refine_latents(m, x, latents, None, steps=0)
    assert set(latents) == set(streams)
    for k, idx in streams.items():
        assert torch.equal(m.quant.quantize(latents[k])[1], idx)
        assert torch.equal(same[k], idx), "0 steps must return the encoder's tokens"
    assert torch.equal(err[0], err[1])


@pytest.mark.parametrize("slope", [0.0, 3.0])
def test_refining_only_some_streams_keeps_the_others(slope):
    """`only`: RefTok's target tokens move, its intra tokens stay the encoder's; an absent stream
    moves nothing and returns the encoder's tokens."""
    m = _model("reftok")
    x = _video(m, b=3, seed=1)
    with torch.no_grad():
        own, _ = m.encode_chunk(x, None)
        latents, _ = m.encode_chunk_latents(x, None)
        part, err = refine_latents(m, x, latents, None, steps=6, slope=slope, only={"target"})
        none, err0 = refine_latents(m, x, latents, None, steps=6, slope=slope, only={"tv"})
    assert torch.equal(part["intra"], own["intra"]) and not torch.equal(part["target"], own["target"])
    assert (err[1] <= err[0]).all() and (err[1] < err[0]).any()
    assert all(torch.equal(none[k], own[k]) for k in own) and torch.equal(err0[0], err0[1])


@pytest.mark.parametrize("arch", ARCHS)
def test_refinement_never_worsens_a_tile_and_improves_some(arch):
    m, x, streams, err, out = _refined(arch, b=3, seed=1, steps=6)
    before, after = err
    assert (after <= before).all()
    assert (after < before).any(), "six steps changed nothing on a random model"
    # the reported error is the error of the returned tokens, decoded by the real decoder
    measured = (out.clamp(-1, 1) - x).pow(2).flatten(1).mean(1)
    assert torch.allclose(measured, after, rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in m.parameters()), "model weights got gradients"
    assert all(p.requires_grad for p in m.parameters()), "the search left the model's weights frozen"


@pytest.mark.parametrize("arch", ARCHS)
def test_refined_coding_keeps_the_loop_closed(arch):
    """Two chunks through the codec's own chunk coder with refinement: decoding the streams with a
    fresh decoder reproduces the encoder's reconstructions exactly, chunk after chunk."""
    m = _model(arch)
    x = _video(m, b=2, chunks=2, seed=2)
    f = m.chunk_frames
    b = _Batches(2, 2)
    coded = []
    for k in range(2):
        streams, recon, es, ds = _code_chunk(m, x[:, :, k * f:(k + 1) * f], b, k == 0, decode=True, refine=4)
        b.enc, b.dec = es, ds
        coded.append((streams, recon, es[0]))
    state = None
    with torch.no_grad():
        for k, (streams, recon, enc_state) in enumerate(coded):
            out, state = m.decode_chunk({n: torch.from_numpy(v) for n, v in streams.items()}, state)
            assert torch.equal(out.float(), recon)
            if arch == "vidtok":  # its encoder carries its own input, whatever tokens were sent
                assert torch.equal(enc_state, x[:, :, :(k + 1) * f][:, :, -m.config.context:])
            else:  # closed loop: the encoder holds exactly what a fresh decoder holds
                assert torch.equal(enc_state, state)


def test_refine_through_the_file_path(tmp_path, models_dir):
    frames = synth_frames(16, 64, 64)
    src = write_video(tmp_path / "in.mkv", frames)
    scores = {}
    for steps in (0, 5):
        dst = tmp_path / f"r{steps}.vtk"
        encode_file(src, dst, model="reftok", refine=steps)
        scores[steps] = psnr_rgb(frames, decode_frames(dst))
    assert np.isfinite(scores[5]) and scores[5] > scores[0]
    from vtcodec.container import VtkReader

    with VtkReader(tmp_path / "r5.vtk") as r:
        assert r.header["refine"] == {"steps": 5, "slope": 0.0, "lr": DEFAULT_LR}
    for bad in ({"refine_slope": 3.0}, {"refine_lr": 0.1}, {"refine": 2, "refine_lr": 0.0},
                {"refine": 2, "refine_slope": float("inf")}):
        with pytest.raises(VtcodecError, match="refine"):
            encode_file(src, tmp_path / "bad.vtk", model="reftok", **bad)
        assert not (tmp_path / "bad.vtk").exists()
    with VtkReader(tmp_path / "r0.vtk") as r:
        assert "refine" not in r.header  # files written without it are exactly what they were
    with pytest.raises(VtcodecError, match="refine"):
        encode_file(src, tmp_path / "bad.vtk", model="reftok", refine=-1)
    assert not (tmp_path / "bad.vtk").exists()


def _latents_for_digits(quant, digits: torch.Tensor) -> torch.Tensor:
    """Latents (.., q) whose FSQ digits are `digits` (.., q), each at the middle of its rounding cell."""
    half = quant._levels.long() // 2
    offset = torch.where(quant._levels % 2 == 0, 0.5, 0.0)
    half_l = (quant._levels - 1) * (1 + quant.eps) / 2
    target = (digits - half).float()
    return torch.atanh((target + offset) / half_l) - torch.atanh(offset / half_l)


def test_soft_bits_prefers_repeats_and_points_an_outlier_home():
    m = _model("vidtok")
    q, grid = m.quant, (2, 4, 4)
    g = torch.Generator().manual_seed(3)
    flat = torch.full((1, 32, q.dim), 3)
    noisy = torch.stack([torch.randint(0, lv, (1, 32), generator=g) for lv in q.levels], dim=-1)
    z_flat, z_noisy = _latents_for_digits(q, flat), _latents_for_digits(q, noisy)
    assert torch.equal(q.codes_to_indices(q(z_flat)), (flat * q._basis).sum(-1))  # the helper is right
    assert soft_bits(q, z_flat, grid) < soft_bits(q, z_noisy, grid)
    # one token of the second step differs in digit 0; its temporal context says 3, so the gradient
    # of the bits must push that digit down, towards 3
    odd = flat.clone()
    odd[0, 16 + 5, 0] = 5
    z = _latents_for_digits(q, odd).requires_grad_(True)
    soft_bits(q, z, grid).sum().backward()
    assert z.grad[0, 21, 0] > 0


def test_soft_bits_contexts_are_the_coders():
    """soft_bits' context ids partition a tile's digits exactly as the range coder's tables do."""
    levels, (t_, h, w) = [8, 5, 3], (3, 4, 5)
    g = torch.Generator().manual_seed(0)
    d = torch.stack([torch.randint(0, lv, (2, t_, h, w), generator=g) for lv in levels], dim=-1)
    soft = contexts(d)
    basis = torch.tensor([1, 8, 40])
    m, base = len(levels), max(levels) + 1
    for b in range(2):
        digits = entropy._digits((d[b] * basis).sum(-1).flatten().numpy(), levels)
        for i in range(m):
            pairs = set()
            for p, (t, y, x) in enumerate(entropy._positions(t_ * h * w, (t_, h, w))):
                coder = entropy._context(digits, p * m + i, i, t, y, x, m, w * m, h * w * m, base)
                pairs.add((int(soft[b, t, y, x, i]), coder))
            assert len(pairs) == len({s for s, _ in pairs}) == len({c for _, c in pairs}) > 10


@pytest.mark.parametrize("arch", ARCHS)
def test_rate_distortion_search_never_worsens_its_objective(arch):
    m, x, streams, err, out = _refined(arch, b=2, seed=4, steps=4, slope=3.0)
    assert (err[1] <= err[0]).all()
    mse = (out.clamp(-1, 1) - x).pow(2).flatten(1).mean(1)
    objective = 10 * torch.log10(mse) + 3.0 * torch.log2(tile_bits(m, streams).float())
    assert torch.allclose(objective, err[1].float(), atol=1e-4)


def test_bench_passes_refinement_to_every_encode(tmp_path, models_dir):
    import vtcodec
    from vtcodec.bench.runner import ModelSpec, run_bench

    seen = []

    class Recording:  # the real codec, remembering what encode_file was asked
        def encode_file(self, *a, **kw):
            seen.append({k: kw.get(k) for k in ("refine", "refine_slope")})
            return vtcodec.encode_file(*a, **kw)

        decode_frames = staticmethod(vtcodec.decode_frames)
        list_models = staticmethod(vtcodec.list_models)

    src = write_video(tmp_path / "in.mkv", synth_frames(8, 64, 64))
    res = run_bench([src], models=[ModelSpec("reftok", "reftok")], codecs=(), with_vmaf=False,
                    codec=Recording(), refine=2, refine_slope=1.5, workdir=tmp_path)
    assert seen and all(s == {"refine": 2, "refine_slope": 1.5} for s in seen)
    assert res["settings"]["refine"] == {"steps": 2, "slope": 1.5, "lr": DEFAULT_LR}
    from rich.console import Console

    from vtcodec.cli_bench import _footer

    console = Console(record=True, width=200)
    _footer(res, console)
    assert "--refine 2 --refine-slope 1.5" in console.export_text()
    for bad in ({"refine": -1}, {"refine": 2, "refine_slope": float("inf")}, {"refine_slope": 3.0}):
        with pytest.raises(VtcodecError, match="refine"):
            run_bench([src], models=[ModelSpec("reftok", "reftok")], codecs=(), codec=Recording(), **bad)


def test_a_model_without_latents_refuses_refinement_in_one_line(tmp_path):
    from test_codec import MeanColourTok, _flat_cut_video
    from vtcodec.errors import ModelError

    src = tmp_path / "cut.mkv"
    _flat_cut_video(src)
    with pytest.raises(ModelError, match="no latents to refine"):
        encode_file(src, tmp_path / "o.vtk", model=MeanColourTok(), refine=3)
    assert not (tmp_path / "o.vtk").exists()
    assert encode_file(src, tmp_path / "o.vtk", model=MeanColourTok()).key_chunks >= 1  # without refine it encodes
