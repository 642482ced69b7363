"""Tests for the quantizer (src/vtcodec/quantizers): FSQ.

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

from vtcodec.quantizers import FSQ

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


def test_fsq_soft_digits_round_to_the_digits_its_indices_hold():
    """soft_digits (the trainer's rate term and refine's bit estimate read it) rounds to the same
    mixed-radix digits codes_to_indices combines, for odd and even level counts, and carries a gradient."""
    fsq = FSQ([15, 5, 8])
    z = (torch.randn(64, 3, generator=torch.Generator().manual_seed(0)) * 3).requires_grad_(True)
    u = fsq.soft_digits(z)
    digits = u.detach().round().long()
    idx = fsq.codes_to_indices(fsq(z))
    assert torch.equal((digits * fsq._basis).sum(-1), idx)
    assert (u >= -0.5).all() and (u <= fsq._levels - 0.5).all()
    u.sum().backward()
    assert (z.grad >= 0).all() and (z.grad[z.detach().abs() < 3] > 0).all()  # flat only where tanh saturates
