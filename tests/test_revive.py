"""Saturated FSQ channels (vtcodec.train.revive): found, rescaled back to where a gradient
reaches them without changing what they round to, and kept there by encoder_step's sat_weight."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY

from vtcodec.models.registry import build
from vtcodec.train.revive import revive, saturation, stream_latents
from vtcodec.train.steps import SAT_EDGE, encoder_step, saturation_penalty, spread_penalty

pytestmark = pytest.mark.usefixtures("one_thread")
ARCHS = ["reftok", "tivtok2", "vidtok"]


def _model(arch: str):
    torch.manual_seed(0)
    return build(arch, TINY[arch]).eval()


def _clips(m, n: int = 3, chunks: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.rand(n, 3, chunks * m.chunk_frames, m.tile, m.tile, generator=g) * 2 - 1


def _saturate(m, stream: str, channel: int, sign: float = 1.0):
    """Push one channel far out on the tanh, as an earlier training left four TV channels."""
    with torch.no_grad():
        head = m.latent_heads[stream]
        head.weight[channel] *= 0.01
        head.bias[channel] = sign * 11.0


def test_pre_bound_is_the_tanh_argument():
    m = _model("reftok")
    z = torch.randn(50, m.quant.dim) * 3
    half = (m.quant._levels - 1) * (1 + m.quant.eps) / 2
    offset = torch.where(m.quant._levels % 2 == 0, 0.5, 0.0)
    a = z + torch.atanh(offset / half)  # FSQ's bound, written out
    assert torch.allclose(m.quant.pre_bound(z), a)
    assert torch.allclose(m.quant.bound(z), torch.tanh(a) * half - offset)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_stream_names_its_latent_layer(arch):
    m = _model(arch)
    clips = _clips(m, 1)
    lat = stream_latents(m, clips)
    assert set(m.latent_heads) == set(lat)
    for name, head in m.latent_heads.items():  # a head's output channel i is the stream's latent channel i
        with torch.no_grad():
            head.bias[3] += 0.5
        moved = stream_latents(m, clips)
        with torch.no_grad():
            head.bias[3] -= 0.5
        assert torch.allclose(moved[name][:, 3], lat[name][:, 3] + 0.5, atol=1e-5)
        assert torch.allclose(moved[name][:, [0, 1, 2, 4, 5]], lat[name][:, [0, 1, 2, 4, 5]], atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_revive_brings_back_a_saturated_channel_and_only_it(arch, sign):
    m = _model(arch)
    stream = sorted(m.latent_heads)[-1]
    _saturate(m, stream, 2, sign)
    clips = _clips(m)
    rows = {(r.stream, r.channel): r for r in saturation(m, clips)}
    assert rows[stream, 2].saturated and rows[stream, 2].slope < 1e-6
    digits_before = {k: m.quant.bound(z).round() for k, z in stream_latents(m, clips).items()}
    params_before = {n: p.detach().clone() for n, p in m.named_parameters()}
    before = revive(m, clips)
    assert {(r.stream, r.channel) for r in before if r.saturated} == {(stream, 2)}
    after = {(r.stream, r.channel): r for r in saturation(m, clips)}
    assert after[stream, 2].slope > 0.1 and abs(after[stream, 2].mean - sign * 1.6) < 0.05
    assert abs(after[stream, 2].std - 0.3) < 0.03
    # what it rounds to mostly stays: at the defaults a tail of the spread reaches the next level
    digits_after = {k: m.quant.bound(z).round() for k, z in stream_latents(m, clips).items()}
    same = (digits_after[stream][:, 2] == digits_before[stream][:, 2]).float().mean()
    assert same > 0.8
    assert ((digits_after[stream][:, 2] - digits_before[stream][:, 2]).abs() <= 1).all()
    head = m.latent_heads[stream]
    for n, p in m.named_parameters():  # every other parameter, and every other row, untouched
        if p is head.weight or p is head.bias:
            keep = torch.ones(p.shape[0], dtype=torch.bool)
            keep[[r.channel for r in before if r.saturated and r.stream == stream]] = False
            assert torch.equal(p[keep], params_before[n][keep])
        elif not any(p is m.latent_heads[s].weight or p is m.latent_heads[s].bias for s in m.latent_heads):
            assert torch.equal(p, params_before[n]), n


def test_revive_needs_named_heads():
    m = _model("tivtok")  # the first TivTok does not name them
    with pytest.raises(ValueError, match="latent_heads"):
        revive(m, _clips(m, 1))


def test_saturation_penalty_is_zero_inside_the_edge_and_grows_outside():
    m = _model("reftok")
    q = m.quant
    shift = q.pre_bound(torch.zeros(q.dim))
    inside = (torch.full((2, 4, q.dim), SAT_EDGE - 0.1) - shift)
    assert torch.equal(saturation_penalty(q, inside), torch.zeros(2))
    for sign in (1, -1):
        out = sign * torch.full((2, 4, q.dim), SAT_EDGE + 1.0) - shift
        assert torch.allclose(saturation_penalty(q, out), torch.ones(2))


def test_sat_weight_reaches_a_saturated_channel_the_loss_alone_cannot():
    """The tanh's slope shuts a saturated channel's row off from the codec loss; the penalty's
    gradient does not pass through the tanh, so with sat_weight the row gets one, pointing inwards."""
    m = _model("reftok")
    m.train()
    _saturate(m, "target", 1)
    clip = _clips(m, 2, chunks=2)

    def bias_grad(**recipe):
        m.zero_grad()
        loss, _, _, logs = encoder_step(m, clip, torch.Generator(), slope=1.0, **recipe)
        loss.backward()
        return float(m.to_q.bias.grad[1]), logs

    g, logs = bias_grad()
    assert abs(g) < 1e-6 and "sat" not in logs and "spread" not in logs
    g, logs = bias_grad(sat_weight=1.0)
    assert g > 1.0  # descent lowers the bias: back towards the edge
    # the log carries the penalty unweighted: one channel of six at |a| ~ 11 in the target stream
    with torch.no_grad():
        expect = torch.stack([sum(saturation_penalty(m.quant, z) for z in
                                  m.encode_chunk_latents(clip[:, :, :m.chunk_frames], None)[0].values())]).mean()
    assert logs["sat"] > 5 and logs["sat"] == pytest.approx(float(expect), rel=0.2)
    assert bias_grad(sat_weight=3.0)[1]["sat"] == pytest.approx(logs["sat"])


def test_spread_penalty_pushes_a_one_level_channel_apart_and_leaves_a_varied_one():
    m = _model("reftok")
    q = m.quant
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, 64, q.dim, generator=g) * 0.8  # every channel spread over several levels
    assert torch.equal(spread_penalty(q, z), torch.zeros(2))
    z[:, :, 1] = 0.3 + 0.001 * torch.randn(2, 64, generator=g)  # channel 1 on one level in both tiles
    z.requires_grad_(True)
    p = spread_penalty(q, z)
    assert (p > 0.2 / q.dim).all()
    p.sum().backward()
    step = -z.grad / z.grad.abs().max()  # descent direction: it must widen the channel
    before, after = q.bound(z.detach()).std(1), q.bound(z.detach() + 0.5 * step).std(1)
    assert (after[:, 1] > before[:, 1] + 0.05).all()
    assert z.grad[:, :, [0, 2, 3, 4, 5]].abs().max() == 0


def test_key_and_main_streams_are_both_revived_in_one_call():
    m = _model("tivtok2")
    _saturate(m, m.KEY, 0)
    _saturate(m, m.MAIN, 4, -1.0)
    clips = _clips(m)
    before = revive(m, clips)
    assert [(r.stream, r.channel) for r in before if r.saturated] == [(m.KEY, 0), (m.MAIN, 4)]
    after = {(r.stream, r.channel): r for r in saturation(m, clips)}
    assert after[m.KEY, 0].slope > 0.1 and after[m.MAIN, 4].slope > 0.1
    assert abs(after[m.MAIN, 4].mean + 1.6) < 0.05


def test_a_channel_at_both_ends_keeps_both_levels():
    """Split between +11 and -11 its mean is 0: re-centring would merge its two levels into one."""
    m = _model("reftok")
    head = m.latent_heads["target"]
    with torch.no_grad():
        head.weight[2] *= 50 / head.weight[2].norm()  # |a| of about 10 or more, either sign
        head.bias[2] = 0.0
    clips = _clips(m)
    r = {(r.stream, r.channel): r for r in saturation(m, clips)}["target", 2]
    assert r.saturated and r.minority > 0.2
    sign_before = torch.sign(m.quant.pre_bound(stream_latents(m, clips)["target"])[:, 2])
    revive(m, clips)
    a = m.quant.pre_bound(stream_latents(m, clips)["target"])[:, 2]
    assert torch.equal(torch.sign(a), sign_before)
    assert abs(float(a.abs().mean()) - 1.6) < 0.05
    assert int(m.quant.bound(stream_latents(m, clips)["target"])[:, 2].round().unique().numel()) >= 2
