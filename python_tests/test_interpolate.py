import pytest
import torch

import mentor3ad_ext as m
from mentor3ad_ext import reference as R

from conftest import DEVICES, FLOAT_DTYPES, HAS_CUDA


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("C", [1, 5, 70])
def test_weighted_gather_matches_reference(device, dtype, C):
    x = torch.randn(3, 40, C, dtype=dtype, device=device)
    idx = torch.randint(-1, 40, (3, 25, 6), device=device)
    w = torch.randn(3, 25, 6, dtype=dtype, device=device)
    got = m.weighted_gather(x, idx, w)
    ref = R.weighted_gather(x.cpu(), idx.cpu(), w.cpu())
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(got.cpu(), ref, **tol)


def test_weighted_gather_gradcheck_and_determinism():
    x = torch.randn(2, 30, 4, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(-1, 30, (2, 50, 3))
    idx[0, :, 0] = 7  # a heavily shared row
    w = torch.randn(2, 50, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m.weighted_gather, (x, idx, w))
    g = torch.randn(2, 50, 4, dtype=torch.float64)
    grads = [torch.autograd.grad(m.weighted_gather(x, idx, w), (x, w), g) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_weighted_gather_bad_input():
    x = torch.randn(1, 10, 2)
    with pytest.raises(ValueError, match=r"idx must lie in \[-1, 9\], got values in \[0, 10\]"):
        m.weighted_gather(x, torch.tensor([[[0, 10]]]), torch.ones(1, 1, 2))
    with pytest.raises(ValueError, match=r"same shape.*idx \(1, 1, 2\), weights \(1, 1, 3\)"):
        m.weighted_gather(x, torch.tensor([[[0, 1]]]), torch.ones(1, 1, 3))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_interpolate_matches_reference(device, dtype, power):
    q = torch.rand(2, 300, 3, dtype=dtype, device=device)
    r = torch.rand(2, 64, 3, dtype=dtype, device=device)
    f = torch.randn(2, 64, 9, dtype=dtype, device=device)
    lq, lr = torch.tensor([300, 120], device=device), torch.tensor([64, 2], device=device)
    got = m.interpolate_features(q, r, f, 3, lq, lr, power=power)
    ref = R.interpolate_features(q.cpu(), r.cpu(), f.cpu(), 3, lq.cpu(), lr.cpu(), power=power)
    torch.testing.assert_close(got.cpu(), ref)
    assert (got[1, 120:] == 0).all()


def test_interpolate_exact_at_ref_points_and_empty():
    r = torch.rand(1, 20, 3, dtype=torch.float64)
    f = torch.randn(1, 20, 4, dtype=torch.float64)
    # eps = 1e-8 leaves the other neighbours ~1e-8 of the weight: the coincident point dominates.
    torch.testing.assert_close(m.interpolate_features(r, r, f), f, atol=1e-6, rtol=0)
    out = m.interpolate_features(torch.rand(1, 5, 3), torch.rand(1, 7, 3), torch.randn(1, 7, 2),
                                 lengths_ref=torch.tensor([0]))
    assert torch.equal(out, torch.zeros(1, 5, 2))  # no reference points: zeros, not NaN


def test_interpolate_k_past_the_reference_cloud():
    # The output holds no neighbours, so k past the reference cloud is that cloud (not a
    # (B, P1, k) search: k = 2**31 asked the allocator for tens of GB).
    q, r, f = torch.rand(2, 6, 3), torch.rand(2, 9, 3), torch.randn(2, 9, 4)
    lengths_ref = torch.tensor([9, 4])
    want = m.interpolate_features(q, r, f, k=9, lengths_ref=lengths_ref)
    assert torch.equal(m.interpolate_features(q, r, f, k=2**31, lengths_ref=lengths_ref), want)
    xyz = torch.rand(2, 4, 6, 3)
    assert torch.equal(m.interpolate_to_grid(r, f, xyz, k=2**31, out_size=(2, 3)),
                       m.interpolate_to_grid(r, f, xyz, k=9, out_size=(2, 3)))


def test_interpolate_gradcheck():
    q = torch.rand(1, 15, 3, dtype=torch.float64, requires_grad=True)
    r = torch.rand(1, 10, 3, dtype=torch.float64, requires_grad=True)
    f = torch.randn(1, 10, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, r, f: m.interpolate_features(q, r, f, k=3), (q, r, f))


def test_interpolate_bad_input():
    q, r = torch.rand(1, 5, 3), torch.rand(1, 7, 3)
    with pytest.raises(ValueError, match=r"ref_features must be \(B, P2, C\) matching ref \(1, 7, 3\), got \(1, 6, 2\)"):
        m.interpolate_features(q, r, torch.randn(1, 6, 2))
    with pytest.raises(ValueError, match="k must be >= 1"):
        m.interpolate_features(q, r, torch.randn(1, 7, 2), k=0)
    with pytest.raises(ValueError, match="power must be > 0"):
        m.interpolate_features(q, r, torch.randn(1, 7, 2), power=0)


@pytest.mark.parametrize("device", DEVICES)
def test_group_points_matches_reference(device):
    pts = torch.rand(3, 700, 3, device=device)
    lengths = torch.tensor([700, 40, 10], device=device)
    got = m.group_points(pts, 32, 16, lengths)
    ref = R.group_points(pts.cpu(), 32, 16, lengths.cpu())
    assert torch.equal(got.idx.cpu(), ref[2]) and torch.equal(got.centers.cpu(), ref[1])
    assert torch.equal(got.neighborhoods.cpu(), ref[0])
    assert (got.idx[2, 10:] == -1).all() and (got.idx[2, :10, 10:] == -1).all()
    assert (got.neighborhoods[:, :, 0][got.idx[:, :, 0] >= 0] == 0).all()  # slot 0: the center


def test_group_points_gradients():
    pts = torch.rand(1, 64, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: m.group_points(p, 8, 4).neighborhoods, (pts,))


def test_weighted_gather_under_compile():
    x = torch.randn(2, 20, 5, requires_grad=True)
    idx = torch.randint(-1, 20, (2, 7, 3))
    w = torch.rand(2, 7, 3, requires_grad=True)
    out = torch.compile(m.weighted_gather)(x, idx, w)
    torch.testing.assert_close(out, m.weighted_gather(x, idx, w))


def test_torch_compile_interpolate():
    q, r, f = torch.rand(1, 50, 3), torch.rand(1, 20, 3), torch.randn(1, 20, 4, requires_grad=True)
    fn = torch.compile(lambda q, r, f: m.interpolate_features(q, r, f).sum())
    out = fn(q, r, f)
    out.backward()
    torch.testing.assert_close(out, m.interpolate_features(q, r, f).sum())
    assert f.grad is not None


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_cpu_cuda_parity_bitwise():
    x = torch.randn(2, 100, 33)
    idx = torch.randint(-1, 100, (2, 80, 5))
    w = torch.rand(2, 80, 5)
    g = torch.randn(2, 80, 33)
    xc, wc = x.clone().requires_grad_(), w.clone().requires_grad_()
    xg, wg = x.cuda().requires_grad_(), w.cuda().requires_grad_()
    m.weighted_gather(xc, idx, wc).backward(g)
    out_g = m.weighted_gather(xg, idx.cuda(), wg)
    out_g.backward(g.cuda())
    assert torch.equal(m.weighted_gather(x, idx, w), out_g.detach().cpu())
    assert torch.equal(xc.grad, xg.grad.cpu())
    torch.testing.assert_close(wc.grad, wg.grad.cpu())
