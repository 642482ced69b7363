"""Structure tests for the tokenizers (src/vtcodec/models) and their checkpoints.

These check what each architecture claims in its docstring, on tiny randomly initialised models
(dim 32, one layer, 32 px tiles, 8-frame chunks), each with a control that the property is not
vacuous:

* TivTok: a frame's TV tokens depend on that frame and the TIV tokens only (scope rule); the
  decoder is per frame (Invariant Broadcasting); later chunks reuse the TIV tokens.
* RefTok: reference features never see the targets; the decoder reads the target tokens; the
  encoder's and decoder's reference states agree exactly over consecutive chunks (closed loop).
* VidTok: causal at latent-frame granularity; chunked coding with the causal cache equals one-shot
  coding.
* All: default configs are 1024 px/token; checkpoints round trip and refuse anything mismatched.
"""

from __future__ import annotations

import math
import os

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from vtcodec.errors import ModelError
from vtcodec.models.reftok import to_8bit
from vtcodec.models.registry import (ARCHS, build, find_by_sha, list_models, load_checkpoint, read_metadata,
                                     save_checkpoint, warm_start)

FEW = settings(max_examples=8, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

TILE, FRAMES = 32, 8
TINY = {
    "tivtok": dict(tile=TILE, frames=FRAMES, patch=8, tubelet_t=4, dim=32, heads=2, tiv_depth=1, tv_depth=1,
                   dec_depth=1, n_tiv=16, n_tv=2, head_width=8),
    "reftok": dict(tile=TILE, frames=FRAMES, patch=8, tubelet_t=4, dim=32, heads=2, enc_depth=1, dec_depth=1,
                   head_width=8, intra_patch=8, intra_dim=32, intra_depth=1),
    "vidtok": dict(tile=TILE, frames=FRAMES, channels=(16, 16, 16)),
}
TINY["tivtok2"] = {**TINY["reftok"], "ref_path": 3, "intra_ctx": 1}
TINY["convtok"] = dict(frames=FRAMES, widths=(8, 8, 8), blocks=(1, 1, 1), levels=(5, 5, 5, 5), key_channels=4,
                       next_channels=2, coarse=False)  # a coarse model decodes alike at initialisation, whatever its seed


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(arch: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build(arch, {**TINY[arch], **overrides}).eval()


def rand_video(b: int = 1, t: int = FRAMES, tile: int = TILE, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, tile, tile, generator=g) * 2 - 1


def other_indices(idx: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Different indices everywhere (shift by a random non-zero amount mod n)."""
    g = torch.Generator().manual_seed(seed)
    return (idx + torch.randint(1, n, idx.shape, generator=g)) % n


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# == TivTok ======================================================================================
@pytest.fixture(scope="module")
def tivtok():
    return tiny("tivtok")


@FEW
@given(s=st.integers(0, FRAMES - 1), seed=st.integers(0, 2**16))
def test_tivtok_tv_tokens_see_only_their_frame(tivtok, s, seed):
    m = tivtok
    video = rand_video(b=2, seed=seed)
    with torch.no_grad():
        tiv = m.quant(m.encode_tiv(video))  # held fixed
        lat = m.encode_tv(video, tiv)
        pert = video.clone()
        pert[:, :, s] = rand_video(b=2, t=1, seed=seed + 1)[:, :, 0]
        lat_p = m.encode_tv(pert, tiv)
    assert lat.shape == (2, FRAMES, m.config.n_tv, m.quant.dim)
    others = [t for t in range(FRAMES) if t != s]
    # every other frame: latents and indices unchanged
    torch.testing.assert_close(lat_p[:, others], lat[:, others], rtol=0, atol=1e-6)
    assert torch.equal(m.quant.quantize(lat_p[:, others])[1], m.quant.quantize(lat[:, others])[1])
    # frame s itself: its latents move
    assert max_diff(lat_p[:, s], lat[:, s]) > 1e-4


def test_tivtok_tv_tokens_read_the_tiv_tokens(tivtok):
    """Control for the scope test: the TV stage really attends to the TIV tokens, in every frame."""
    m = tivtok
    video = rand_video(seed=3)
    with torch.no_grad():
        tiv = m.quant(m.encode_tiv(video))
        _, tiv_idx = m.quant.quantize(tiv)
        tiv2 = m.quant.indices_to_codes(other_indices(tiv_idx, m.quant.codebook_size))
        lat, lat2 = m.encode_tv(video, tiv), m.encode_tv(video, tiv2)
    for t in range(FRAMES):
        assert max_diff(lat[:, t], lat2[:, t]) > 1e-4


@pytest.mark.parametrize("t", [0, 5, FRAMES - 1])
def test_tivtok_decoder_is_per_frame(tivtok, t):
    m = tivtok
    video = rand_video(b=2, seed=4)
    with torch.no_grad():
        streams, _ = m.encode_chunk(video, None)
        out, _ = m.decode_chunk(streams, None)
        tv = streams["tv"].view(2, FRAMES, m.config.n_tv).clone()
        tv[:, t] = other_indices(tv[:, t], m.quant.codebook_size, seed=t)
        out2, _ = m.decode_chunk({**streams, "tv": tv.flatten(1)}, None)
    assert out.shape == video.shape
    others = [f for f in range(FRAMES) if f != t]
    # changing frame t's TV tokens changes decoded frame t ...
    assert (out2[:, :, t] - out[:, :, t]).abs().mean() > 1e-3
    # ... and no other frame (invariant broadcasting: frames decode independently)
    torch.testing.assert_close(out2[:, :, others], out[:, :, others], rtol=0, atol=1e-6)


def test_tivtok_decoder_broadcasts_tiv_to_every_frame(tivtok):
    m = tivtok
    video = rand_video(seed=5)
    with torch.no_grad():
        streams, _ = m.encode_chunk(video, None)
        out, _ = m.decode_chunk(streams, None)
        tiv2 = other_indices(streams["tiv"], m.quant.codebook_size)
        out2, _ = m.decode_chunk({**streams, "tiv": tiv2}, None)
    for t in range(FRAMES):
        assert (out2[:, :, t] - out[:, :, t]).abs().mean() > 1e-4


def test_tivtok_cross_chunk_reuse(tivtok):
    m = tivtok
    c = m.config
    video = rand_video(b=2, t=2 * FRAMES, seed=6)
    v1, v2 = video[:, :, :FRAMES], video[:, :, FRAMES:]
    with torch.no_grad():
        s1, enc_state = m.encode_chunk(v1, None)
        assert set(s1) == {"tiv", "tv"}
        assert s1["tiv"].shape == (2, c.n_tiv) and s1["tv"].shape == (2, FRAMES * c.n_tv)
        assert {k: v.shape[1] for k, v in s1.items()} == m.tokens_per_chunk(key=True)

        s2, enc_state2 = m.encode_chunk(v2, enc_state)
        assert set(s2) == {"tv"}, "a following chunk must send TV tokens only"
        assert {k: v.shape[1] for k, v in s2.items()} == m.tokens_per_chunk(key=False)
        assert torch.equal(enc_state2, enc_state), "the segment's TIV tokens are reused unchanged"
        # the TV tokens of chunk 2 are coded against chunk 1's TIV tokens
        _, expect = m.quant.quantize(m.encode_tv(v2, enc_state))
        assert torch.equal(s2["tv"], expect.flatten(1))

        out1, dec_state = m.decode_chunk(s1, None)
        assert torch.equal(dec_state, enc_state), "decoder's TIV codes must equal the encoder's exactly"
        out2, dec_state2 = m.decode_chunk(s2, dec_state)
        assert torch.equal(dec_state2, dec_state)
        assert out1.shape == out2.shape == v1.shape
        expect_out = m.decode_codes(enc_state, m.quant.quantize(m.encode_tv(v2, enc_state))[0])
        torch.testing.assert_close(out2, expect_out, rtol=0, atol=1e-6)
        assert torch.isfinite(out2).all()
        with pytest.raises(ValueError):
            m.decode_chunk(s2, None)


# == RefTok ======================================================================================
@pytest.fixture(scope="module")
def reftok():
    return tiny("reftok")


@FEW
@given(seed=st.integers(0, 2**16), frames=st.sets(st.integers(0, FRAMES - 1), min_size=1))
def test_reftok_reference_never_sees_targets(reftok, seed, frames):
    m = reftok
    video = rand_video(b=2, seed=seed)
    ref = rand_video(b=2, t=1, seed=seed + 7)[:, :, 0]
    fr = sorted(frames)
    pert = video.clone()
    pert[:, :, fr] = rand_video(b=2, t=len(fr), seed=seed + 13)
    with torch.no_grad():
        h = m.reference_features(ref)
        lat, h_a = m.encode_targets(video, ref)
        lat_p, h_b = m.encode_targets(pert, ref)
    assert h.shape == (2, m.n_ref, m.config.dim)
    torch.testing.assert_close(h_a, h, rtol=0, atol=1e-5)
    torch.testing.assert_close(h_b, h, rtol=0, atol=1e-5)
    # control: the perturbation does reach the target latents
    assert max_diff(lat_p, lat) > 1e-3


def test_reftok_targets_read_the_reference(reftok):
    """Control: information does flow reference -> target (the mask is not a wall both ways)."""
    m = reftok
    video = rand_video(seed=8)
    with torch.no_grad():
        lat1, _ = m.encode_targets(video, video[:, :, 0])
        lat2, _ = m.encode_targets(video, rand_video(t=1, seed=9)[:, :, 0])
    assert max_diff(lat1, lat2) > 1e-3


def test_reftok_decoder_depends_on_target_tokens(reftok):
    m = reftok
    video = rand_video(b=2, seed=10)
    with torch.no_grad():
        streams, state = m.encode_chunk(video, None)
        out, _ = m.decode_chunk(streams, None)
        changed = {**streams, "target": other_indices(streams["target"], m.quant.codebook_size)}
        out2, _ = m.decode_chunk(changed, None)
        # same through the parts, with a given reference
        codes = m.quant.indices_to_codes(streams["target"])
        d1 = m.decode_targets(codes, state)
        d2 = m.decode_targets(m.quant.indices_to_codes(changed["target"]), state)
    scale = out.abs().mean()
    assert (out2 - out).abs().mean() > 0.1 * scale, "the decoder must read the target tokens"
    assert (d2 - d1).abs().mean() > 0.1 * d1.abs().mean()
    # every frame of the chunk depends on them
    assert ((out2 - out).abs().mean(dim=(0, 1, 3, 4)) > 1e-3).all()


def test_reftok_stream_layout(reftok):
    m = reftok
    video = rand_video(b=2, t=2 * FRAMES, seed=11)
    with torch.no_grad():
        s1, st1 = m.encode_chunk(video[:, :, :FRAMES], None)
        s2, _ = m.encode_chunk(video[:, :, FRAMES:], st1)
    assert set(s1) == {"intra", "target"}
    assert set(s2) == {"target"}
    assert {k: v.shape for k, v in s1.items()} == {"intra": (2, (TILE // 8) ** 2), "target": (2, m.n_tgt)}
    assert {k: v.shape[1] for k, v in s1.items()} == m.tokens_per_chunk(key=True)
    assert {k: v.shape[1] for k, v in s2.items()} == m.tokens_per_chunk(key=False)
    for s in (s1, s2):
        for v in s.values():
            assert v.dtype == torch.int64 and v.min() >= 0 and v.max() < m.quant.codebook_size
    with pytest.raises(ValueError):
        m.decode_chunk(s2, None)


def test_reftok_closed_loop_three_chunks(reftok):
    m = reftok
    video = rand_video(b=2, t=3 * FRAMES, seed=12)
    enc_state = dec_state = None
    with torch.no_grad():
        for k in range(3):
            streams, enc_state = m.encode_chunk(video[:, :, k * FRAMES:(k + 1) * FRAMES], enc_state)
            assert ("intra" in streams) == (k == 0)
            out, dec_state = m.decode_chunk(streams, dec_state)
            assert out.shape == (2, 3, FRAMES, TILE, TILE)
            assert enc_state.shape == (2, 3, TILE, TILE)
            assert torch.equal(enc_state, dec_state), f"encoder and decoder references differ after chunk {k}"
            # the state is the decoded last frame on the 8-bit grid
            assert torch.equal(dec_state, to_8bit(out[:, :, -1]))
            px = (dec_state + 1) * 127.5
            assert torch.allclose(px, px.round(), atol=1e-3) and px.min() >= 0 and px.max() <= 255


# == TivTok2 (image TIV tokens) ===================================================================
@pytest.fixture(scope="module")
def tivtok2():
    return tiny("tivtok2", seed=5)


@pytest.mark.parametrize("slot", [0, 1])
@pytest.mark.parametrize("enc_split", [False, True])
def test_tivtok2_tv_tokens_see_only_their_slot_and_the_tiv_image(slot, enc_split):
    """The scope rule, encoder side: changing the frames of one time slot (tubelet_t frames) changes
    that slot's TV tokens only; the TIV image (the state) is given. enc_split: the shipped layout."""
    m, tt = tiny("tivtok2", seed=5, enc_split=enc_split), TINY["tivtok2"]["tubelet_t"]
    video = rand_video(seed=20)
    with torch.no_grad():
        _, tiv = m.encode_chunk_latents(video, None)
        a, _ = m.encode_chunk_latents(video, tiv)
        changed = video.clone()
        changed[:, :, slot * tt:(slot + 1) * tt] = rand_video(seed=21)[:, :, :tt]
        b, _ = m.encode_chunk_latents(changed, tiv)
    per_slot = (a["tv"] - b["tv"]).abs().amax(-1).view(FRAMES // tt, -1).amax(-1)
    assert per_slot[slot] > 1e-4
    assert torch.all(per_slot[torch.arange(len(per_slot)) != slot] == 0), per_slot


def test_tivtok2_decoder_decodes_each_slot_from_its_own_tv_tokens(tivtok2):
    """The scope rule, decoder side: a slot's frames depend on that slot's TV tokens and the TIV image."""
    m, tt = tivtok2, TINY["tivtok2"]["tubelet_t"]
    with torch.no_grad():
        streams, state = m.encode_chunk(rand_video(seed=22), None)
        out, _ = m.decode_chunk(streams, None)
        n = streams["tv"].shape[1] // (FRAMES // tt)
        other = dict(streams, tv=streams["tv"].clone())
        other["tv"][:, n:] = other_indices(other["tv"][:, n:], m.quant.codebook_size)  # every slot but the first
        out2, _ = m.decode_chunk(other, None)
    assert torch.equal(out[:, :, :tt], out2[:, :, :tt])
    assert max_diff(out[:, :, tt:], out2[:, :, tt:]) > 1e-3


def test_tivtok2_later_chunks_reuse_the_tiv_image_and_decode_alone(tivtok2):
    """Invariant broadcasting: the state is the segment's TIV image for every chunk, on the 8-bit grid,
    the same on both sides; so any later chunk decodes from the TIV tokens plus its own TV tokens."""
    m = tivtok2
    video = rand_video(b=2, t=3 * FRAMES, seed=23)
    enc = dec = None
    coded = []
    with torch.no_grad():
        for k in range(3):
            streams, enc = m.encode_chunk(video[:, :, k * FRAMES:(k + 1) * FRAMES], enc)
            assert ("tiv" in streams) == (k == 0)
            out, dec = m.decode_chunk(streams, dec)
            coded.append((streams, out))
            assert torch.equal(enc, dec)
        tiv_image = m.key_image(m.quant.indices_to_codes(coded[0][0]["tiv"]))
        assert torch.equal(dec, tiv_image)
        px = (tiv_image + 1) * 127.5
        assert torch.allclose(px, px.round(), atol=1e-3)
        # chunk 2 straight from the TIV tokens, chunk 1 never decoded
        direct, _ = m.decode_chunk({"tiv": coded[0][0]["tiv"], "tv": coded[2][0]["tv"]}, None)
    assert torch.equal(direct, coded[2][1])
    with pytest.raises(ValueError, match="TIV"):
        m.decode_chunk({"tv": coded[1][0]["tv"]}, None)


def test_tivtok2_warm_starts_from_reftok_and_whole_chunk_scope_is_reftok(tmp_path):
    """A RefTok checkpoint fills every tensor of tivtok2; with tv_scope 0 a key chunk decodes
    exactly as RefTok's (same network, other stream names); tv_scope 1 changes it. Other archs refuse."""
    cfg = {**TINY["reftok"], "ref_path": 3, "intra_ctx": 1}
    torch.manual_seed(9)
    ref = build("reftok", cfg).eval()
    with torch.no_grad():  # the gate channel starts at zero; give it something to carry
        ref.head.up2.weight.normal_(0, 0.1)
    p = tmp_path / "reftok.safetensors"
    save_checkpoint(ref, p)
    video = rand_video(seed=24)
    outs = {}
    for scope in (0, 1):
        m, fresh = warm_start(p, {"tv_scope": scope}, "tivtok2")
        assert m.arch == "tivtok2" and fresh == []
        with torch.no_grad():
            streams, _ = m.eval().encode_chunk(video, None)
            outs[scope] = (streams, m.decode_chunk(streams, None)[0])
    with torch.no_grad():
        rs, _ = ref.encode_chunk(video, None)
        rout, _ = ref.decode_chunk(rs, None)
    assert torch.equal(outs[0][0]["tiv"], rs["intra"]) and torch.equal(outs[0][0]["tv"], rs["target"])
    assert torch.equal(outs[0][1], rout)
    assert max_diff(outs[1][1], rout) > 1e-4
    v = tmp_path / "vidtok.safetensors"
    save_checkpoint(tiny("vidtok"), v)
    with pytest.raises(ModelError, match="cannot start from it"):
        warm_start(v, None, "tivtok2")


@pytest.mark.parametrize("arch", ["reftok", "tivtok2"])
def test_post_filter_starts_as_the_model_it_extends_and_is_on_the_codec_path(arch, tmp_path):
    """post_width adds a full-resolution detail pass: warm-started from a checkpoint without one,
    only post.* is fresh and every chunk codes and decodes exactly as before (zero last layer).
    Once that layer moves, the decode changes and the encoder's closed-loop state stays the
    decoder's: RefTok's next reference is the filtered last frame, TivTok's the unfiltered TIV image."""
    base = tiny(arch, seed=31)
    p = tmp_path / "m.safetensors"
    save_checkpoint(base, p)
    m, fresh = warm_start(p, {"post_width": 4})
    m.eval()
    assert fresh and all(k.startswith("post.") for k in fresh)
    video = rand_video(t=2 * FRAMES, seed=32)
    chunks = (video[:, :, :FRAMES], video[:, :, FRAMES:])

    def run(model):
        with torch.no_grad():
            s0, st = model.encode_chunk(chunks[0], None)
            s1, st1 = model.encode_chunk(chunks[1], st)
            d0, ds = model.decode_chunk(s0, None)
            d1, ds1 = model.decode_chunk(s1, ds)
            return s0, s1, d0, d1, (st, st1), (ds, ds1)

    def tensors(out):  # every tensor run() returns, in order
        for x in out:
            yield from x.values() if isinstance(x, dict) else x if isinstance(x, tuple) else (x,)

    before, same = run(base), run(m)
    assert all(torch.equal(x, y) for x, y in zip(tensors(before), tensors(same), strict=True))
    with torch.no_grad():
        m.post.out[-1].weight.normal_(0, 0.5)
    moved = run(m)
    assert max_diff(moved[2], before[2]) > 1e-3 and max_diff(moved[3], before[3]) > 1e-3
    for enc, dec in zip(moved[4], moved[5]):  # encoder and decoder carry the same state
        assert torch.equal(enc, dec)
    if arch == "reftok":
        assert torch.equal(moved[5][0], to_8bit(moved[2][:, :, -1])) and max_diff(moved[5][0], before[5][0]) > 1e-3
    else:
        assert torch.equal(moved[5][0], before[5][0])


def test_post_filter_is_per_frame_per_sample_and_reads_the_reference():
    """Each output frame depends on its own input frame and its own sample's reference only."""
    from vtcodec.models.layers import PostFilter
    torch.manual_seed(5)
    post = PostFilter(4)
    with torch.no_grad():
        post.out[-1].weight.normal_(0, 0.5)
    video, ref = rand_video(b=2, t=4, seed=6), rand_video(b=2, t=1, seed=7)[:, :, 0]
    out = post(video, ref)
    assert out.shape == video.shape
    for i in range(2):  # a batch decodes as its samples one by one
        assert max_diff(post(video[i:i + 1], ref[i:i + 1]), out[i:i + 1]) < 1e-5
    v2 = video.clone()
    v2[:, :, 2] = -v2[:, :, 2]
    out2 = post(v2, ref)
    changed = [(out2[:, :, t] - out[:, :, t]).abs().max().item() > 1e-4 for t in range(4)]
    assert changed == [False, False, True, False]
    r2 = ref.clone()
    r2[1] = -r2[1]
    out3 = post(video, r2)
    assert torch.equal(out3[0], out[0]) and max_diff(out3[1], out[1]) > 1e-3


@pytest.mark.parametrize("overrides", [{"post_width": 4, "ref_path": 1}, {"post_width": -1}])
def test_post_filter_config_refused(overrides):
    with pytest.raises(ModelError, match="post_width"):
        tiny("reftok", **overrides)


def test_warp_moves_each_frame_by_its_own_displacement():
    from vtcodec.models.layers import warp
    img = rand_video(b=2, t=1, seed=41)[:, :, 0]  # (2, 3, 32, 32)
    flow = torch.zeros(2, 2, 3, TILE, TILE)
    flow[:, 0, 1] = 2.0  # frame 1 reads 2 px to the right
    flow[1, 1, 2] = -3.0  # frame 2 of sample 1 reads 3 px up
    out = warp(img, flow)
    assert out.shape == (2, 3, 3, TILE, TILE)
    assert max_diff(out[:, :, 0], img) < 1e-5 and max_diff(out[0, :, 2], img[0]) < 1e-5
    assert max_diff(out[:, :, 1, :, :-2], img[:, :, :, 2:]) < 1e-5
    assert max_diff(out[:, :, 1, :, -2:], img[:, :, :, -1:].expand(-1, -1, -1, 2)) < 1e-5  # edges repeat
    assert max_diff(out[1, :, 2, 3:], img[1, :, :-3]) < 1e-5
    half = warp(img, torch.full((2, 2, 1, TILE, TILE), 0.5) * torch.tensor([1.0, 0.0]).view(1, 2, 1, 1, 1))
    assert max_diff(half[:, :, 0, :, :-1], (img[..., :-1] + img[..., 1:]) / 2) < 1e-5  # bilinear
    small = torch.zeros(1, 2, 1, 24, 24)  # a tile that is not a power of two, a sub-pixel move
    small[:, 0] = 0.05
    img24 = img[:1, :, :24, :24]
    want = warp(img24, small)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # training's precision: the grid stays float32
        got = warp(img24.bfloat16(), small.bfloat16())
    assert got.dtype == torch.float32 and max_diff(got, want) < 1e-2
    assert max_diff(want[:, :, 0, :, :-1], 0.95 * img24[..., :-1] + 0.05 * img24[..., 1:]) < 1e-5


@pytest.mark.parametrize("arch", ["reftok", "tivtok2"])
def test_ref_path_4_starts_as_ref_path_3_and_copies_the_reference_from_where_it_says(arch, tmp_path):
    """ref_path 4 warm-started from a ref_path 3 checkpoint decodes as before (its displacement rows
    start at zero); with content off, the gate at 1 and a displacement of 3 px, each output frame is
    the reference read 3 px to the right; the encoder's closed loop carries the decoder's state."""
    base = tiny(arch, seed=43, ref_path=3)
    p = tmp_path / "m.safetensors"
    save_checkpoint(base, p)
    m, fresh = warm_start(p, {"ref_path": 4})
    m.eval()
    assert sorted(fresh) == ["head.up2.bias[16:]", "head.up2.weight[16:]"]
    video = rand_video(t=2 * FRAMES, seed=44)
    chunks = (video[:, :, :FRAMES], video[:, :, FRAMES:])
    with torch.no_grad():
        s0, st = base.encode_chunk(chunks[0], None)
        s0m, _ = m.encode_chunk(chunks[0], None)
        assert all(torch.equal(s0[k], s0m[k]) for k in s0)
        assert max_diff(m.decode_chunk(s0, None)[0], base.decode_chunk(s0, None)[0]) < 1e-5
        head = m.head.up2
        head.weight.zero_()
        head.bias.zero_()
        head.bias[16:20] = 3.0 / m.config.flow_px  # channel 4, x displacement (pixel_shuffle rows 4c..4c+3)
        m.ref_gate.fill_(1.0)
        ref = rand_video(t=1, seed=45)[:, :, 0]
        codes = m.quant(m.encode_targets(chunks[0], ref)[0])
        out = m.decode_targets(codes, ref)
        want = ref[:, :, None, :, 3:].expand(-1, -1, FRAMES, -1, -1)
        assert max_diff(out[..., :-3], want) < 1e-5
        head.weight.normal_(0, 0.05)  # a displacement that varies: the closed loop still holds
        s0, st = m.encode_chunk(chunks[0], None)
        s1, st1 = m.encode_chunk(chunks[1], st)
        d0, ds = m.decode_chunk(s0, None)
        _, ds1 = m.decode_chunk(s1, ds)
        assert torch.equal(st, ds) and torch.equal(st1, ds1)


def test_ref_path_5_refused():
    with pytest.raises(ModelError, match="ref_path"):
        tiny("reftok", ref_path=5)


# == VidTok ======================================================================================
def vidtok_model(**overrides):
    return tiny("vidtok", **overrides)


def test_vidtok_causal_at_latent_frame_granularity():
    m = vidtok_model()
    n_groups = 4
    video = rand_video(t=4 * n_groups, seed=20)
    with torch.no_grad():
        out = m(video)["recon"]
        lat = m.encode_latent(video)
        for g in range(n_groups - 1):
            later = video.clone()
            later[:, :, 4 * (g + 1):] = rand_video(t=4 * (n_groups - g - 1), seed=21 + g)
            out2 = m(later)["recon"]
            lat2 = m.encode_latent(later)
            # groups <= g: unchanged, in the latents and in the output
            torch.testing.assert_close(lat2[:, :, : g + 1], lat[:, :, : g + 1], rtol=0, atol=1e-6)
            torch.testing.assert_close(out2[:, :, : 4 * (g + 1)], out[:, :, : 4 * (g + 1)], rtol=0, atol=1e-6)
            # control: group g+1 did change
            assert max_diff(lat2[:, :, g + 1], lat[:, :, g + 1]) > 1e-4
            assert max_diff(out2[:, :, 4 * (g + 1): 4 * (g + 2)], out[:, :, 4 * (g + 1): 4 * (g + 2)]) > 1e-4


@pytest.mark.parametrize("spatial_down", [16, 8])
def test_vidtok_chunked_encode_equals_one_shot(spatial_down):
    m = vidtok_model(spatial_down=spatial_down)
    video = rand_video(b=2, t=3 * FRAMES, seed=30)
    g = TILE // spatial_down
    with torch.no_grad():
        _, one_shot = m.quant.quantize(m.encode_latent(video).movedim(1, -1))  # (B, t, g, g)
        state, chunks = None, []
        for k in range(3):
            streams, state = m.encode_chunk(video[:, :, k * FRAMES:(k + 1) * FRAMES], state)
            assert set(streams) == {"latent"}
            assert streams["latent"].shape == (2, m.tokens_per_chunk(key=k == 0)["latent"])
            chunks.append(streams["latent"])
    assert one_shot.shape == (2, 3 * FRAMES // 4, g, g)
    assert torch.equal(torch.cat(chunks, dim=1), one_shot.flatten(1))


@pytest.mark.parametrize("spatial_down", [16, 8])
def test_vidtok_chunked_decode_equals_one_shot(spatial_down):
    m = vidtok_model(spatial_down=spatial_down)
    video = rand_video(b=2, t=3 * FRAMES, seed=31)
    per_chunk = m.tokens_per_chunk(key=False)["latent"]
    with torch.no_grad():
        codes, idx = m.quant.quantize(m.encode_latent(video).movedim(1, -1))
        one_shot = m.decode_latent(codes.movedim(-1, 1))
        flat = idx.flatten(1)
        state, outs = None, []
        for k in range(3):
            out, state = m.decode_chunk({"latent": flat[:, k * per_chunk:(k + 1) * per_chunk]}, state)
            assert out.shape == (2, 3, FRAMES, TILE, TILE)
            outs.append(out)
    assert one_shot.shape == video.shape
    torch.testing.assert_close(torch.cat(outs, dim=2), one_shot, rtol=0, atol=1e-4)


@pytest.mark.parametrize("spatial_down,ppt", [(16, 1024), (8, 256)])
def test_vidtok_configs_pixels_per_token(spatial_down, ppt):
    m = build("vidtok", {"spatial_down": spatial_down})
    assert (m.tile, m.chunk_frames) == (128, 16)
    assert m.pixels_per_token == ppt
    assert m.tokens_per_chunk(True) == m.tokens_per_chunk(False) == {"latent": 4 * (128 // spatial_down) ** 2}


def test_vidtok_rejects_other_spatial_down():
    with pytest.raises(ModelError, match="spatial_down"):
        build("vidtok", {"spatial_down": 4})


def test_tivtok_rejects_n_tiv_not_a_multiple_of_patches():
    with pytest.raises(ModelError, match="n_tiv"):
        build("tivtok", {"n_tiv": 150})


# == All models: ratios, checkpoints, registry ==================================================
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_default_config_is_1024_pixels_per_token(arch):
    m = build(arch)
    assert m.pixels_per_token == 1024
    assert (m.tile, m.chunk_frames) == ((0, 4) if arch == "convtok" else (128, 16))  # 0: whole frames
    d = m.describe()
    assert d["arch"] == arch and d["pixels_per_token"] == 1024


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_stream_grids_lay_out_every_stream(arch):
    """The entropy coder's (T, H, W) grid of each stream holds exactly one tile's tokens."""
    m = build(arch)
    assert set(m.stream_grids) == set(m.tokens_per_chunk(True)) == set(m.stream_levels)
    for name, grid in m.stream_grids.items():
        assert len(grid) == 3 and min(grid) >= 1
        assert math.prod(grid) == m.tokens_per_chunk(True)[name]
        assert math.prod(grid) == m.tokens_per_chunk(False).get(name, math.prod(grid))
    t = {"vidtok": {"latent": 4}, "reftok": {"intra": 1, "target": 4}, "tivtok": {"tiv": 16, "tv": 16},
         "tivtok2": {"tiv": 1, "tv": 4}, "convtok": {"latent0": 1, "latent1": 1}}[arch]
    assert {k: g[0] for k, g in m.stream_grids.items()} == t  # latent time / patches / frames


def code_two_chunks(m, video):
    """Encode + decode two chunks; returns everything produced, for exact comparison."""
    out = []
    enc = dec = None
    with torch.no_grad():
        for k in range(2):
            streams, enc = m.encode_chunk(video[:, :, k * FRAMES:(k + 1) * FRAMES], enc)
            rec, dec = m.decode_chunk(streams, dec)
            out += [streams, rec]
        out.append(m(video[:, :, :FRAMES], video[:, :, 0])["recon"] if m.arch in ("reftok", "tivtok2")
                   else m(video[:, :, :FRAMES])["recon"])
    return out


def assert_same_outputs(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, dict):
            assert set(x) == set(y)
            for k in x:
                assert torch.equal(x[k], y[k]), k
        else:
            assert torch.equal(x, y)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One tiny saved checkpoint per arch: (model, path)."""
    d = tmp_path_factory.mktemp("ckpt")
    out = {}
    for arch in ARCHS:
        m = tiny(arch, seed=123)
        p = d / f"{arch}.safetensors"
        sha = save_checkpoint(m, p, info={"step": 7})
        assert len(sha) == 64
        out[arch] = (m, p)
    return out


SAVE_IN_A_PROCESS = """
import sys, torch
from vtcodec.models.registry import build, save_checkpoint
torch.manual_seed(0)
print(save_checkpoint(build("vidtok", {"tile": 32, "frames": 8, "channels": [8, 8, 8]}), sys.argv[1],
                      info={"step": 7, "data": "media", "note": "\u00e9"}))
"""


def test_checkpoint_bytes_do_not_depend_on_the_process(tmp_path):
    """The same weights and metadata saved by four processes give one sha256 (safetensors alone
    orders the metadata map per process: three keys agree across four processes 1 time in 216),
    the metadata keys are sorted in the header, and the file loads."""
    import subprocess
    import sys
    shas = set()
    for i in range(4):
        r = subprocess.run([sys.executable, "-c", SAVE_IN_A_PROCESS, str(tmp_path / f"{i}.safetensors")],
                           capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr
        shas.add(r.stdout.strip())
    assert len(shas) == 1
    blob = (tmp_path / "0.safetensors").read_bytes()
    n = int.from_bytes(blob[:8], "little")
    assert n % 8 == 0
    meta = json.loads(blob[8:8 + n])["__metadata__"]
    assert list(meta) == sorted(meta) == ["arch", "config", "info"]
    assert read_metadata(tmp_path / "0.safetensors") == meta
    assert load_checkpoint(tmp_path / "0.safetensors").arch == "vidtok"


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_checkpoint_round_trip_identical_outputs(arch, checkpoints):
    m, p = checkpoints[arch]
    meta = read_metadata(p)
    assert meta["arch"] == arch and json.loads(meta["info"]) == {"step": 7}
    torch.manual_seed(999)  # the loaded model is built afresh: weights must come from the file
    loaded = load_checkpoint(p)
    assert type(loaded) is type(m) and loaded.config == m.config
    assert not loaded.training
    video = rand_video(b=1, t=2 * FRAMES, seed=40)
    assert_same_outputs(code_two_chunks(m, video), code_two_chunks(loaded, video))
    # control: a differently initialised model of the same config does not match
    other = tiny(arch, seed=124)
    with pytest.raises(AssertionError):
        assert_same_outputs(code_two_chunks(m, video), code_two_chunks(other, video))


def _rewrite(src, dst, edit):
    meta = read_metadata(src)
    tensors = load_file(str(src))
    edit(tensors)
    save_file(tensors, str(dst), metadata=meta)
    return dst


def _drop_one(t):
    del t[sorted(t)[len(t) // 2]]


def _add_one(t):
    t["bogus.extra.weight"] = torch.zeros(3)


def _reshape_one(t):
    k = next(k for k in sorted(t) if t[k].ndim >= 1 and t[k].shape[0] > 1)
    t[k] = torch.zeros(t[k].shape[0] + 1, *t[k].shape[1:])


@pytest.mark.parametrize("edit", [_drop_one, _add_one, _reshape_one], ids=["missing", "extra", "shape"])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_checkpoint_mismatch_is_model_error(arch, edit, checkpoints, tmp_path):
    _, p = checkpoints[arch]
    bad = _rewrite(p, tmp_path / "bad.safetensors", edit)
    with pytest.raises(ModelError):
        load_checkpoint(bad)
    # control: the untouched copy, rewritten the same way, loads
    good = _rewrite(p, tmp_path / "good.safetensors", lambda t: None)
    assert load_checkpoint(good).config == ARCHS[arch].Config(**TINY[arch])


@pytest.mark.parametrize("kind", ["text", "empty", "pickle", "truncated", "missing"])
def test_non_safetensors_file_is_model_error(kind, checkpoints, tmp_path):
    p = tmp_path / "bad.safetensors"
    if kind == "text":
        p.write_text("this is not a checkpoint\n" * 10)
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "pickle":
        torch.save({"w": torch.zeros(4)}, p)
    elif kind == "truncated":
        data = checkpoints["tivtok"][1].read_bytes()
        p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        load_checkpoint(p)


def test_safetensors_without_vtcodec_metadata_is_model_error(checkpoints, tmp_path):
    p = tmp_path / "plain.safetensors"
    save_file(load_file(str(checkpoints["tivtok"][1])), str(p))
    with pytest.raises(ModelError):
        load_checkpoint(p)


def test_registry_refuses_unknown_arch_and_config_keys(checkpoints, tmp_path):
    with pytest.raises(ModelError):
        build("nosuchtok")
    with pytest.raises(ModelError):
        build("tivtok", {"bogus_key": 1})
    with pytest.raises(ModelError):
        build("vidtok", {**TINY["vidtok"], "dim": 32})  # a key of another arch
    # the same through checkpoint metadata
    src = checkpoints["vidtok"][1]
    meta = read_metadata(src)
    tensors = load_file(str(src))
    p = tmp_path / "arch.safetensors"
    save_file(tensors, str(p), metadata={**meta, "arch": "nosuchtok"})
    with pytest.raises(ModelError):
        load_checkpoint(p)
    p = tmp_path / "keys.safetensors"
    save_file(tensors, str(p), metadata={**meta, "config": json.dumps({**json.loads(meta["config"]), "bogus": 1})})
    with pytest.raises(ModelError):
        load_checkpoint(p)


def test_checkpoint_with_unparseable_config_is_model_error(checkpoints, tmp_path):
    src = checkpoints["vidtok"][1]
    p = tmp_path / "json.safetensors"
    save_file(load_file(str(src)), str(p), metadata={**read_metadata(src), "config": "{not json"})
    with pytest.raises(ModelError):
        load_checkpoint(p)


def test_checkpoint_with_invalid_config_value_is_model_error(checkpoints, tmp_path):
    src = checkpoints["vidtok"][1]
    meta = read_metadata(src)
    p = tmp_path / "value.safetensors"
    bad_cfg = json.dumps({**json.loads(meta["config"]), "spatial_down": 12})
    save_file(load_file(str(src)), str(p), metadata={**meta, "config": bad_cfg})
    with pytest.raises(ModelError):
        load_checkpoint(p)


def test_superseded_checkpoint_is_found_by_hash_but_not_listed(tmp_path, monkeypatch):
    from conftest import save_tiny

    monkeypatch.setenv("VTCODEC_MODELS", str(tmp_path))
    d = tmp_path.resolve()
    old = save_tiny("vidtok", d / "vidtok.safetensors", seed=0)
    (d / "superseded").mkdir()
    (d / "vidtok.safetensors").rename(d / "superseded" / "vidtok-r1.safetensors")
    new = save_tiny("vidtok", d / "vidtok.safetensors", seed=1)
    assert old != new
    assert find_by_sha("vidtok", new) == d / "vidtok.safetensors"
    assert find_by_sha("vidtok", old) == d / "superseded" / "vidtok-r1.safetensors"
    assert "vidtok-r1" not in [m.key for m in list_models()]
    with pytest.raises(ModelError, match="not installed"):
        find_by_sha("vidtok", "0" * 64)


def test_reftok_decoder_reads_the_reference_on_every_path(reftok):
    """ref_path 2: the reference reaches the output through attention, the per-position skip and
    the pixel gate; each path alone changes the decoded video when the reference changes."""
    m = reftok
    assert m.config.ref_path == 2
    video = rand_video(seed=12)
    with torch.no_grad():
        codes = m.quant(m.encode_targets(video, video[:, :, 0])[0])
        ref_a, ref_b = video[:, :, 0], rand_video(t=1, seed=13)[:, :, 0]
        base = max_diff(m.decode_targets(codes, ref_a), m.decode_targets(codes, ref_b))
        for name in ("ref_skip", "ref_gate"):
            saved = {k: v.clone() for k, v in m.state_dict().items()}
            for p in (m.ref_skip.parameters() if name == "ref_skip" else [m.ref_gate]):
                p.fill_(0.5 if name == "ref_gate" else 0.01)
            d = max_diff(m.decode_targets(codes, ref_a), m.decode_targets(codes, ref_b))
            m.load_state_dict(saved)
            assert d != base, name
    assert base > 1e-4


@pytest.mark.parametrize("arch,field", [("reftok", "ref_path"), ("tivtok", "tv_path")])
def test_checkpoint_saved_before_a_config_field_existed_loads_with_its_legacy_value(arch, field, tmp_path):
    """A checkpoint from the first design has no `ref_path`/`tv_path` in its stored config: it must load as 1
    (the layout it was trained with), with strict keys, not as the new default 2."""
    from conftest import TINY

    path = tmp_path / "old.safetensors"
    save_checkpoint(build(arch, {**TINY[arch], field: 1}), path)
    meta = read_metadata(path)
    cfg = json.loads(meta["config"])
    del cfg[field]
    save_file(load_file(str(path)), str(path), metadata={**meta, "config": json.dumps(cfg)})
    assert getattr(load_checkpoint(path).config, field) == 1
    assert getattr(build(arch).config, field) == 2


def test_warm_start_copies_matching_weights_and_names_the_new_ones(tmp_path):
    from conftest import TINY

    old = build("reftok", {**TINY["reftok"], "ref_path": 1})
    save_checkpoint(old, tmp_path / "old.safetensors")
    new, fresh = warm_start(tmp_path / "old.safetensors", {"ref_path": 2})
    assert new.config.ref_path == 2
    assert fresh == ["ref_gate", "ref_skip.bias", "ref_skip.weight"]
    o = old.state_dict()
    assert all(torch.equal(v, o[k]) for k, v in new.state_dict().items() if k not in fresh)


def test_tivtok_tv_codes_reach_every_patch_directly(tivtok):
    """tv_path 2: frame t's TV codes reach its patch queries through tv_local as well as attention."""
    m = tivtok
    assert m.config.tv_path == 2
    video = rand_video(seed=14)
    with torch.no_grad():
        tiv = m.quant(m.encode_tiv(video))
        tv = m.quant(m.encode_tv(video, tiv))
        tv_other = m.quant(torch.randn(tv.shape, generator=torch.Generator().manual_seed(14)))

        def mean_diff():  # over every pixel: a maximum can sit where tv_local does not reach
            return (m.decode_codes(tiv, tv) - m.decode_codes(tiv, tv_other)).abs().mean().item()

        base = mean_diff()
        saved = {k: v.clone() for k, v in m.state_dict().items()}
        m.tv_local.weight.fill_(0.01)
        direct = mean_diff()
        m.load_state_dict(saved)
    assert base > 1e-4 and direct != base


def test_warm_start_grows_an_output_layer_and_starts_as_the_stored_model(tmp_path):
    """ref_path 2 -> 3 adds a gate channel to the head's last conv: the stored rows are copied into
    the leading rows, only the new rows are reported fresh, and the new model decodes exactly as
    the stored one until training moves the new rows off zero."""
    old = tiny("reftok", ref_path=2)
    with torch.no_grad():
        old.ref_gate.fill_(0.3)
    save_checkpoint(old, tmp_path / "old.safetensors")
    new, fresh = warm_start(tmp_path / "old.safetensors", {"ref_path": 3})
    assert fresh == ["head.up2.bias[12:]", "head.up2.weight[12:]"]
    assert new.head.up2.weight.shape[0] == 16 and torch.equal(new.head.up2.weight[:12], old.head.up2.weight)
    video, ref = rand_video(seed=15), rand_video(t=1, seed=16)[:, :, 0]
    with torch.no_grad():
        assert torch.equal(new.eval()(video, ref)["recon"], old(video, ref)["recon"])


def test_reftok_per_pixel_gate_copies_the_reference_where_it_says():
    """ref_path 3: the fourth head channel scales the reference per pixel; a gate of 1 with zero
    content reproduces the reference exactly."""
    m = tiny("reftok", ref_path=3)
    video, ref = rand_video(seed=17), rand_video(t=1, seed=18)[:, :, 0]
    with torch.no_grad():
        codes = m.quant(m.encode_targets(video, ref)[0])
        m.head.up2.weight.zero_()
        m.head.up2.bias.zero_()
        m.head.up2.bias[12:] = 1.0  # g = 1 everywhere, content = 0
        out = m.decode_targets(codes, ref)
    assert torch.allclose(out, ref[:, :, None].expand_as(out))


def test_vidtok_rejects_chunks_shorter_than_its_causal_cache():
    """A key chunk's state must have the shape of a continuing chunk's: per-tile refresh mixes rows."""
    with pytest.raises(ModelError, match="cover the causal cache"):
        build("vidtok", {**TINY["vidtok"], "frames": 4})


def test_warm_start_grows_only_tensors_the_model_declares(tmp_path):
    """A shape change outside GROWABLE (here RefTok's unfold_t when tubelet_t changes) starts fresh
    instead of inheriting rows whose meaning changed."""
    old = tiny("reftok", ref_path=2)
    save_checkpoint(old, tmp_path / "old.safetensors")
    new, fresh = warm_start(tmp_path / "old.safetensors", {"tubelet_t": 2})
    assert "unfold_t.weight" in fresh and "unfold_t.weight[" not in " ".join(fresh)


@pytest.mark.parametrize("arch", ["tivtok", "reftok"])
def test_warm_start_widened_pixel_head_starts_as_the_stored_model(arch, tmp_path):
    """head_width 8 -> 16: old units ignore the new channels, so the output is unchanged, and the new
    channels' outgoing weights (zero) get gradients, so training can bring them in."""
    old = tiny(arch)
    save_checkpoint(old, tmp_path / "old.safetensors")
    new, fresh = warm_start(tmp_path / "old.safetensors", {"head_width": 16})
    new.eval()
    assert "head.c1.0.weight[8:]" in fresh and "head.c1.0.weight[:, 8:]" in fresh and "head.up2.weight" not in fresh
    assert "head.up2.weight[:, 4:]" in fresh  # width // 2 inputs: 4 -> 8
    video = rand_video()
    with torch.no_grad():
        if arch == "reftok":
            ref = video[:, :, 0]
            a, b = old(video, ref)["recon"], new(video, ref)["recon"]
            assert torch.allclose(old.intra(ref), new.intra(ref), atol=1e-5)  # its head widened too
        else:
            a, b = old(video)["recon"], new(video)["recon"]
    assert torch.allclose(a, b, atol=1e-5)
    new.train()
    out = new(video, video[:, :, 0])["recon"] if arch == "reftok" else new(video)["recon"]
    out.square().mean().backward()
    assert new.head.up2.weight.grad[:, 4:].abs().sum() > 0
    assert new.head.c1[0].weight.grad[:, 8:].abs().sum() > 0


@pytest.mark.parametrize("mode", ["intra", "ref", "tiv"])
def test_convtok_encoder_state_is_the_decoders_in_every_mode(mode):
    """The encoder skips decoding where the next state needs no pixels (intra: none; tiv: the
    segment's image); in every mode it must still carry exactly the decoder's state."""
    m = tiny("convtok", mode=mode)
    v = rand_video(t=2 * FRAMES, tile=32, seed=3)
    es = ds = None
    with torch.no_grad():
        for k in range(2):
            s, es = m.encode_chunk(v[:, :, k * FRAMES:(k + 1) * FRAMES], es)
            _, ds = m.decode_chunk(s, ds)
            assert (es is None) == (ds is None) == (mode == "intra")
            assert es is None or torch.equal(es, ds)


@pytest.mark.parametrize("arch", ["convtok", "tivtok"])
def test_encode_and_decode_chunk_is_encode_then_decode(arch):
    """The codec's refresh decision asks for a chunk's streams and its decode at once; ConvTok
    decodes once for both (closed loop), the default runs encode_chunk then decode_chunk. Either
    way: the same streams, video and states as the two calls."""
    modes = ["intra", "ref", "tiv"] if arch == "convtok" else [None]
    for mode in modes:
        m = tiny(arch, **({"mode": mode} if mode else {}))
        v = rand_video(t=2 * FRAMES, tile=32 if arch == "convtok" else m.tile, seed=4)
        es = ds = None
        with torch.no_grad():
            for k in range(2):
                x = v[:, :, k * FRAMES:(k + 1) * FRAMES] if arch == "convtok" else v[:, :, :FRAMES]
                s1, es1 = m.encode_chunk(x, es)
                r1, ds1 = m.decode_chunk(s1, ds)
                s2, es2, r2, ds2 = m.encode_and_decode_chunk(x, es, ds)
                assert s1.keys() == s2.keys() and all(torch.equal(s1[n], s2[n]) for n in s1)
                assert torch.allclose(r1, r2, atol=1e-6)
                for a, b in ((es1, es2), (ds1, ds2)):
                    assert (a is None) == (b is None)
                    if isinstance(a, torch.Tensor):
                        assert torch.allclose(a, b, atol=1e-6)
                es, ds = es2, ds2


def test_convtok_full_res_filter_in_bands_is_exact():
    """Without gradients the full-resolution filter runs frame by frame in bands of rows (memory
    bounded by a band at 1080p); it must compute what the whole frame gives."""
    from vtcodec.models.convtok import FullResFilter

    torch.manual_seed(0)
    f = FullResFilter(4)
    torch.nn.init.normal_(f.b.weight, std=0.1)
    f.BAND = 16
    v = torch.rand(2, 3, 3, 50, 24) * 2 - 1
    with torch.enable_grad():
        whole = f(v).detach()
    with torch.no_grad():
        banded = f(v)
    assert torch.allclose(whole, banded, atol=1e-6)


def test_convtok_coarse_path_starts_at_the_thumbnail():
    """coarse: at initialisation (the rest of the decoder outputs zero) a key chunk sent with its
    first 3 channels decodes to the frames' 16x16 block means (bilinear between them, no finer):
    the thumbnail, to FSQ's step; with the reference given, the path codes the change from it."""
    m = tiny("convtok", coarse=True, levels=(63, 63, 63, 5), post_width=0)
    g = torch.Generator().manual_seed(0)
    flat = torch.rand(1, 3, 1, 2, 2, generator=g).mul(1.2).sub(0.6)  # 2x2 blocks of flat colour
    video = flat.repeat_interleave(16, -1).repeat_interleave(16, -2).expand(-1, -1, FRAMES, -1, -1)
    with torch.no_grad():
        codes = m.quantize(m.encode_latent(video), 3)
        out = m.decode_codes(codes)
        centre = out[:, :, :, 8::16, 8::16]  # block centres: bilinear upsampling hits the block value
        assert (centre - flat).abs().max() < 0.05
        z_same = m.encode_latent(video, None, video[:, :, 0])  # against itself: no change to code
        z_none = m.encode_latent(video)
        assert (z_none - z_same)[..., :3].abs().max() > 0.1
        assert torch.allclose((z_none - z_same)[..., 3:], torch.zeros(1), atol=1e-6)


def test_convtok_quality_ladder_keeps_the_colour_channels_of_a_key_chunk():
    """Quality doubles the channels per step from quality 2's; with the coarse path a key chunk
    never sends fewer than its 3 colour channels, a conditional chunk may send 1."""
    plain = tiny("convtok", levels=(5,) * 16, key_channels=8, next_channels=4)
    coarse = tiny("convtok", levels=(5,) * 16, key_channels=8, next_channels=4, coarse=True)
    assert [plain.channels_for(q, True) for q in range(4)] == [2, 4, 8, 16]
    assert [coarse.channels_for(q, True) for q in range(4)] == [3, 4, 8, 16]
    assert [coarse.channels_for(q, False) for q in range(4)] == [1, 2, 4, 8]
    assert coarse.channels_for(None, True) == 8


def test_convtok_counts_one_token_per_position():
    """ConvTok splits each token's 16 channels over two streams: the codec counts positions, so
    bits per token and pixels per token (bench) are per 16x16 x frames block."""
    m = tiny("convtok", levels=(5,) * 16, key_channels=8, next_channels=4)
    m.set_frame(32, 48)
    streams, _ = m.encode_chunk(rand_video(b=1, t=FRAMES, tile=32)[..., :48].repeat(1, 1, 1, 1, 2)[..., :48], None)
    assert sorted(streams) == ["latent0", "latent1"]
    assert m.count_tokens(streams) == 2 * 3 == streams["latent0"].numel()
    assert m.pixels_per_token == FRAMES * 16 * 16
