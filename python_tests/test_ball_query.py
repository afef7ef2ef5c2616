import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mentor3ad_ext as m
from mentor3ad_ext import reference as R

from conftest import DEVICES, FLOAT_DTYPES, HAS_CUDA


def _check(p1, p2, l1=None, l2=None, K=5, radius=0.3):
    got = m.ball_query(p1, p2, l1, l2, K=K, radius=radius)
    cpu = lambda t: None if t is None else t.cpu()  # noqa: E731
    ref = R.ball_query(p1.cpu(), p2.cpu(), cpu(l1), cpu(l2), K=K, radius=radius)
    assert torch.equal(got.idx.cpu(), ref.idx)
    assert torch.equal(got.dists.cpu(), ref.dists)
    assert torch.equal(got.knn.cpu(), ref.knn)
    return got


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("D", [2, 3, 5, 8, 9])  # the CPU's tree up to D = 8, then the scan
@pytest.mark.parametrize("K,radius", [(1, 0.5), (8, 0.3), (64, 0.6), (500, 0.2)])
def test_matches_reference(device, dtype, D, K, radius):
    p1 = torch.rand(2, 100, D, dtype=dtype, device=device)
    p2 = torch.rand(2, 700, D, dtype=dtype, device=device)
    _check(p1, p2, K=K, radius=radius)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("K", [1, 5, 31, 33, 200])
def test_few_queries_over_large_ragged_clouds(device, K):
    # CUDA serves few queries over clouds of >= 256 points one warp per query, 32 points at a
    # time: K reached in the middle of a chunk, clouds shorter than a chunk, empty ones.
    p1 = torch.rand(3, 40, 3, device=device)
    p2 = torch.rand(3, 1000, 3, device=device)
    l1 = torch.tensor([40, 40, 0], device=device)
    l2 = torch.tensor([1000, 19, 1000], device=device)
    got = _check(p1, p2, l1, l2, K=K, radius=0.35)
    assert (got.idx[2] == -1).all() and (got.idx[1, :, 19:] == -1).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("D", [4, 6, 8])
def test_mid_dimensional_tree_ties_and_ragged(device, D):
    # The CPU searches a KD-tree up to D = 8: a lattice repeated twice (points exactly on the
    # radius are out, duplicates keep index order), ragged and empty clouds, K above the ball.
    g = torch.Generator().manual_seed(15)
    lattice = torch.randint(0, 3, (500, D), generator=g).float()
    p2 = torch.stack([torch.cat([lattice, lattice]), torch.rand(1000, D, generator=g)]).to(device)
    p1 = torch.stack([lattice[:60], torch.rand(60, D, generator=g)]).to(device)
    l1, l2 = torch.tensor([60, 0], device=device), torch.tensor([1000, 1000], device=device)
    for K, radius in ((5, 1.0), (40, 1.5), (300, 2.0)):
        _check(p1, p2, l1, l2, K=K, radius=radius)


@pytest.mark.parametrize("device", DEVICES)
def test_first_k_in_index_order_and_padding(device):
    p2 = torch.tensor([[[0.0, 0, 0], [5, 0, 0], [0.1, 0, 0], [0.2, 0, 0], [0.05, 0, 0]]], device=device)
    p1 = torch.zeros(1, 1, 3, device=device)
    got = _check(p1, p2, K=3, radius=0.25)
    assert got.idx[0, 0].tolist() == [0, 2, 3]  # index order, not distance order
    got = _check(p1, p2, K=6, radius=0.25)
    assert got.idx[0, 0].tolist() == [0, 2, 3, 4, -1, -1]
    assert got.dists[0, 0, 4:].tolist() == [0, 0]
    # Strictly inside: a point at exactly the radius is out.
    got = _check(p1, torch.tensor([[[0.5, 0, 0]]], device=device), K=2, radius=0.5)
    assert got.idx[0, 0].tolist() == [-1, -1]


@pytest.mark.parametrize("device", DEVICES)
def test_ragged_and_empty(device):
    p1, p2 = torch.rand(3, 40, 3, device=device), torch.rand(3, 200, 3, device=device)
    _check(p1, p2, torch.tensor([40, 0, 13], device=device), torch.tensor([0, 200, 77], device=device), K=16)


def test_gradcheck():
    p1 = torch.rand(1, 10, 3, dtype=torch.float64, requires_grad=True)
    p2 = torch.rand(1, 30, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: m.ball_query(a, b, K=6, radius=0.5).dists, (p1, p2))


@pytest.mark.parametrize("bad,exc,match", [
    (dict(radius=0.0), ValueError, "radius must be a finite number > 0, got 0.0"),
    (dict(radius=-1.0), ValueError, "radius must be a finite number > 0, got -1.0"),
    (dict(radius=float("nan")), ValueError, "radius must be a finite number > 0"),
    (dict(radius="big"), TypeError, "radius must be a float"),
    (dict(K=0), ValueError, "K must be >= 1"),
    (dict(p2=torch.randn(1, 9, 4)), ValueError, r"p1 \(1, 8, 3\) and p2 \(1, 9, 4\)"),
])
def test_bad_input(bad, exc, match):
    args = dict(p1=torch.randn(1, 8, 3), p2=torch.randn(1, 9, 3), K=2, radius=0.2)
    args.update(bad)
    with pytest.raises(exc, match=match):
        m.ball_query(**args)


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_cpu_cuda_parity():
    p1, p2 = torch.rand(2, 300, 3), torch.rand(2, 5000, 3)
    cpu = m.ball_query(p1, p2, K=32, radius=0.1)
    gpu = m.ball_query(p1.cuda(), p2.cuda(), K=32, radius=0.1)
    assert torch.equal(cpu.idx, gpu.idx.cpu()) and torch.equal(cpu.dists, gpu.dists.cpu())


def test_opcheck():
    p1, p2 = torch.rand(2, 16, 3, requires_grad=True), torch.rand(2, 20, 3, requires_grad=True)
    torch.library.opcheck(torch.ops.mentor3ad.ball_query, (p1, p2, torch.tensor([16, 3]), torch.tensor([20, 9]), 4, 0.5))


@settings(max_examples=30, deadline=None)
@given(B=st.integers(0, 3), P1=st.integers(0, 30), P2=st.integers(0, 80), K=st.integers(1, 40),
       r=st.floats(0.1, 3.0), seed=st.integers(0, 2**16))
def test_property(B, P1, P2, K, r, seed):
    g = torch.Generator().manual_seed(seed)
    p1 = torch.randint(-2, 3, (B, P1, 3), generator=g).float()
    p2 = torch.randint(-2, 3, (B, P2, 3), generator=g).float()
    _check(p1, p2, torch.randint(0, P1 + 1, (B,), generator=g), torch.randint(0, P2 + 1, (B,), generator=g), K=K, radius=r)
