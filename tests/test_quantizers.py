"""Tests for the quantizers (src/vtcodec/quantizers): FSQ and VQ with codebook splitting.

FSQ is what every shipped model uses, so its index mapping is part of the bitstream: the tests
check the exact inverse property of codes <-> indices for every index of several level sets, that
every index is reachable from some latent, that forward lands exactly on the grid, that gradients
pass straight through, and that the math stays fp32 under bf16 autocast.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from vtcodec.quantizers import FSQ, VQ

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LEVEL_SETS = [[8, 8, 8, 5, 5, 5], [3], [2, 2], [4, 5], [7, 5, 5, 5, 5]]
levels_st = st.lists(st.integers(2, 9), min_size=1, max_size=5)


pytestmark = pytest.mark.usefixtures("one_thread")


def digits_of(levels, codes):
    """Per-channel integer digits in [0, L) of grid codes, computed independently of FSQ."""
    half = torch.tensor([n // 2 for n in levels], dtype=torch.float64)
    return (codes.double() * half + half).round().long()


def grid_representatives(n_levels: int) -> torch.Tensor:
    """For a 1-channel FSQ with `n_levels`, one z per output digit, found by a dense 1D scan.

    Picks the middle of each digit's run of z, so the representative is far from a boundary.
    """
    fsq = FSQ([n_levels])
    z = torch.linspace(-10, 10, 20001)
    idx = fsq.codes_to_indices(fsq(z[:, None]))
    reps = []
    for d in range(n_levels):
        hit = (idx == d).nonzero().flatten()
        assert len(hit) > 0, f"digit {d} of {n_levels} levels never produced by the z scan"
        reps.append(z[hit[len(hit) // 2]])
    return torch.stack(reps)


# -- FSQ ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", LEVEL_SETS, ids=str)
def test_fsq_indices_codes_exact_inverses_for_every_index(levels):
    fsq = FSQ(levels)
    n = math.prod(levels)
    assert fsq.codebook_size == n and fsq.dim == len(levels)
    idx = torch.arange(n)
    codes = fsq.indices_to_codes(idx)
    assert codes.shape == (n, len(levels)) and codes.dtype == torch.float32
    assert codes.min() >= -1 and codes.max() <= 1
    back = fsq.codes_to_indices(codes)
    assert back.dtype == torch.int64
    assert torch.equal(back, idx)
    # and the other way round: codes -> indices -> codes is the identity on the grid, bit for bit
    assert torch.equal(fsq.indices_to_codes(back), codes)
    # distinct indices are distinct grid points, each channel takes exactly L values
    assert len(torch.unique(codes, dim=0)) == n
    for i, L in enumerate(levels):
        assert len(torch.unique(codes[:, i])) == L


@FAST
@given(levels=levels_st, data=st.data())
def test_fsq_round_trip_random_level_sets(levels, data):
    fsq = FSQ(levels)
    n = math.prod(levels)
    idx = torch.tensor(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=64)))
    assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(idx)), idx)
    # indices keep their batch shape
    idx2 = idx[None].expand(3, -1)
    assert fsq.indices_to_codes(idx2).shape == (*idx2.shape, len(levels))
    assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(idx2)), idx2)


@pytest.mark.parametrize("levels", [[3], [2, 2], [4, 5]], ids=str)
def test_fsq_every_index_reachable_brute_force_grid(levels):
    """Dense grid over z (all channels at once): forward hits every index in [0, prod)."""
    fsq = FSQ(levels)
    axis = torch.linspace(-6, 6, 241)
    z = torch.cartesian_prod(*[axis] * len(levels)).reshape(-1, len(levels))
    codes, idx = fsq.quantize(z)
    assert set(idx.tolist()) == set(range(fsq.codebook_size))
    assert idx.min() >= 0 and idx.max() < fsq.codebook_size


@pytest.mark.parametrize("levels", LEVEL_SETS, ids=str)
def test_fsq_every_index_reachable_from_constructed_z(levels):
    """Assemble z from per-channel representatives of every digit: forward yields each index once."""
    fsq = FSQ(levels)
    reps = [grid_representatives(L) for L in levels]
    digit_grid = torch.cartesian_prod(*[torch.arange(L) for L in levels]).reshape(-1, len(levels))
    z = torch.stack([reps[i][digit_grid[:, i]] for i in range(len(levels))], dim=-1)
    codes, idx = fsq.quantize(z)
    # each constructed z lands on the digits it was built for ...
    assert torch.equal(digits_of(levels, codes), digit_grid)
    # ... and the indices are a bijection onto [0, prod)
    assert torch.equal(idx.sort().values, torch.arange(fsq.codebook_size))


@FAST
@given(levels=levels_st, seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([0.01, 1.0, 3.0, 100.0, 1e6]))
def test_fsq_forward_lands_exactly_on_grid(levels, seed, scale):
    fsq = FSQ(levels)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(257, len(levels), generator=g) * scale
    codes = fsq(z)
    assert codes.dtype == torch.float32 and codes.shape == z.shape
    idx = fsq.codes_to_indices(codes)
    assert idx.min() >= 0 and idx.max() < fsq.codebook_size
    # exactly on the grid: re-deriving the code from its index gives the same float, bit for bit
    assert torch.equal(fsq.indices_to_codes(idx), codes)
    # per channel: codes * (L // 2) is an integer in the channel's range
    for i, L in enumerate(levels):
        q = codes[:, i] * (L // 2)
        assert torch.allclose(q, q.round(), atol=1e-5)
        lo, hi = -(L // 2), (L - 1) - (L // 2)
        assert q.round().min() >= lo and q.round().max() <= hi
    # quantize() agrees with forward + codes_to_indices
    c2, i2 = fsq.quantize(z)
    assert torch.equal(c2, codes) and torch.equal(i2, idx)


def test_fsq_forward_is_monotone_per_channel():
    fsq = FSQ([8, 5])
    z = torch.linspace(-8, 8, 4001)[:, None].expand(-1, 2)
    codes = fsq(z)
    assert (codes[1:] >= codes[:-1]).all()


@pytest.mark.parametrize("levels", LEVEL_SETS, ids=str)
def test_fsq_straight_through_gradient(levels):
    fsq = FSQ(levels)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, len(levels), generator=g, requires_grad=True)
    w = torch.randn(64, len(levels), generator=g)
    (fsq(z) * w).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert (z.grad != 0).all(), "rounding must not block the gradient"
    # straight-through: the gradient is that of the un-rounded bound(z) / (L // 2)
    z2 = z.detach().clone().requires_grad_(True)
    half = torch.tensor([n // 2 for n in levels], dtype=torch.float32)
    (fsq.bound(z2) / half * w).sum().backward()
    assert torch.allclose(z.grad, z2.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("levels", LEVEL_SETS, ids=str)
def test_fsq_fp32_under_bf16_autocast(levels):
    fsq = FSQ(levels)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(512, len(levels), generator=g) * 2
    ref_codes, ref_idx = fsq.quantize(z)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        codes, idx = fsq.quantize(z)
    assert codes.dtype == torch.float32
    assert torch.equal(codes, ref_codes) and torch.equal(idx, ref_idx)

    # the realistic case: the latent comes out of a layer that autocast runs in bf16
    lin = nn.Linear(4, len(levels))
    x = torch.randn(512, 4, generator=g)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        zb = lin(x)
        codes_b, idx_b = fsq.quantize(zb)
    assert zb.dtype == torch.bfloat16  # autocast really was on
    assert codes_b.dtype == torch.float32
    c_ref, i_ref = fsq.quantize(zb.detach().float())  # same bf16 values, no autocast
    assert torch.equal(codes_b, c_ref) and torch.equal(idx_b, i_ref)


@pytest.mark.parametrize("bad", [[], [1], [8, 1], [0, 5]])
def test_fsq_rejects_levels_below_two(bad):
    with pytest.raises(ValueError):
        FSQ(bad)


def test_fsq_bits_and_no_persistent_state():
    fsq = FSQ([8, 8, 8, 5, 5, 5])
    assert fsq.codebook_size == 64000
    assert fsq.bits_per_token == pytest.approx(math.log2(64000))
    assert fsq.state_dict() == {}  # derived tables only: nothing in checkpoints


# -- VQ -------------------------------------------------------------------------------------------
@FAST
@given(size=st.integers(2, 64), dim=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_vq_indices_codes_round_trip(size, dim, seed):
    torch.manual_seed(seed)
    vq = VQ(size, dim)
    idx = torch.arange(size)
    codes = vq.indices_to_codes(idx)
    assert codes.shape == (size, dim)
    assert torch.equal(codes, vq.codebook.detach().float())
    # exact nearest-neighbour distances (no matmul shortcut), to skip near-duplicate codebooks
    d = (codes[:, None, :].double() - codes[None, :, :].double()).norm(dim=-1)
    d.fill_diagonal_(float("inf"))
    if d.min() > 1e-2:  # (see test_vq_round_trip_near_duplicate_codes for the closer case)
        assert torch.equal(vq.codes_to_indices(codes), idx)
        # batch shapes survive
        idx2 = torch.randint(0, size, (3, 5))
        assert torch.equal(vq.codes_to_indices(vq.indices_to_codes(idx2)), idx2)
    assert vq.levels == [size] and vq.codebook_size == size


@FAST
@given(seed=st.integers(0, 2**31 - 1))
def test_vq_quantize_is_nearest_code(seed):
    torch.manual_seed(seed)
    vq = VQ(16, 3)
    z = torch.randn(2, 7, 3)
    codes, idx = vq.quantize(z)
    assert idx.shape == (2, 7) and codes.shape == (2, 7, 3)
    d = ((z[..., None, :] - vq.codebook.detach()) ** 2).sum(-1)  # (2, 7, 16)
    best = d.min(-1).values
    assert torch.allclose(d.gather(-1, idx[..., None])[..., 0], best, atol=1e-5)
    assert torch.equal(codes, vq.indices_to_codes(idx))


def test_vq_forward_loss_and_gradients():
    torch.manual_seed(0)
    vq = VQ(32, 4).train()
    z = torch.randn(10, 4, requires_grad=True)
    out, loss = vq(z)
    assert out.shape == z.shape and out.dtype == torch.float32
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    # forward values are codebook entries ...
    _, idx = vq.quantize(z.detach())
    assert torch.allclose(out.detach(), vq.codebook.detach()[idx], atol=1e-6)
    # ... with straight-through gradient to z and a loss gradient into the codebook
    (out.sum() + loss).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and (z.grad != 0).any()
    assert vq.codebook.grad is not None and (vq.codebook.grad != 0).any()
    # finite under bf16 autocast too
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out_b, loss_b = vq(z.detach())
    assert out_b.dtype == torch.float32 and torch.isfinite(loss_b)


def test_vq_round_trip_near_duplicate_codes():
    vq = VQ(26, 1)
    with torch.no_grad():
        vq.codebook.copy_(torch.linspace(-3, 3, 26)[:, None])
        vq.codebook[7, 0] = vq.codebook[3, 0] + 4e-4  # e.g. a split copy of code 3, a little apart
    idx = torch.arange(26)
    assert torch.equal(vq.codes_to_indices(vq.indices_to_codes(idx)), idx)


def _vq_with_usage(size: int, used: list[int], per_code: int = 20) -> tuple[VQ, torch.Tensor]:
    torch.manual_seed(0)
    vq = VQ(size, 4).train()
    cb0 = vq.codebook.detach().clone()
    z = cb0[used].repeat(per_code, 1) + 1e-4 * torch.randn(per_code * len(used), 4)
    vq(z)
    return vq, cb0


def test_vq_usage_counted_in_training_only():
    vq, cb0 = _vq_with_usage(8, [1, 2, 5])
    assert vq.usage.tolist() == [0, 20, 20, 0, 0, 20, 0, 0]
    vq.eval()
    vq(cb0[[0, 3]])
    assert vq.usage.tolist() == [0, 20, 20, 0, 0, 20, 0, 0]


def test_vq_split_dead_replaces_unused_codes_and_returns_count():
    used = [0, 1, 2, 4, 5, 7]
    vq, cb0 = _vq_with_usage(8, used)
    n = vq.split_dead()
    assert n == 2
    cb = vq.codebook.detach()
    dead = [3, 6]
    assert torch.equal(cb[used], cb0[used]), "used codes must be left alone"
    for d in dead:
        assert not torch.equal(cb[d], cb0[d]), f"dead code {d} was not replaced"
        # a perturbed copy of a used code (noise 0.01 per channel)
        dist = (cb[d] - cb0[used]).norm(dim=-1)
        assert dist.min() < 0.1
    assert (vq.usage == 0).all(), "usage restarts after a split"
    assert torch.isfinite(cb).all()
    # the replaced codes are now reachable: quantizing near them picks them
    _, idx = vq.quantize(cb[dead])
    assert idx.tolist() == dead


def test_vq_split_dead_nothing_dead():
    vq, cb0 = _vq_with_usage(4, [0, 1, 2, 3])
    assert vq.split_dead() == 0
    assert torch.equal(vq.codebook.detach(), cb0)
    assert (vq.usage == 0).all()


def test_vq_split_dead_min_usage_threshold():
    vq, cb0 = _vq_with_usage(8, [0, 1, 2, 4, 5, 7])
    vq.usage[[0, 1]] = 3.0  # rarely used, below the threshold of 5
    assert vq.split_dead(min_usage=5.0) == 4


def test_vq_split_dead_copies_used_codes_when_most_are_dead():
    used = [0, 1]
    vq, cb0 = _vq_with_usage(16, used)
    assert vq.split_dead() == 14
    cb = vq.codebook.detach()
    for d in range(2, 16):
        dist_used = (cb[d] - cb0[used]).norm(dim=-1).min()
        assert dist_used < 0.1, f"dead code {d} is not a perturbed copy of a used code"
