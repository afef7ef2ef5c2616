import pytest
import torch

import mentor3ad_ext as m
from mentor3ad_ext import reference as R

from conftest import DEVICES, FLOAT_DTYPES, HAS_CUDA


def _scene(B=2, G=40, C=6, H=16, W=24, dtype=torch.float64, device="cpu", p_valid=0.7):
    centers = torch.rand(B, G, 3, dtype=dtype, device=device)
    feats = torch.randn(B, G, C, dtype=dtype, device=device)
    valid = torch.rand(B, H, W, device=device) < p_valid
    xyz = torch.rand(B, H, W, 3, dtype=dtype, device=device) * valid[..., None]
    return centers, feats, xyz, valid


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("out_size", [None, (4, 6), (8, 3), 8])
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_matches_reference(device, dtype, out_size, power):
    centers, feats, xyz, valid = _scene(dtype=dtype, device=device)
    if out_size == 8:
        xyz, valid = xyz[:, :, :16], valid[:, :, :16]
    got = m.interpolate_to_grid(centers, feats, xyz, valid, k=3, out_size=out_size, power=power)
    ref = R.interpolate_to_grid(centers.cpu(), feats.cpu(), xyz.cpu(), valid.cpu(), k=3, out_size=out_size, power=power)
    torch.testing.assert_close(got.cpu(), ref)


def test_default_valid_mask_and_ragged_centers():
    centers, feats, xyz, _ = _scene()
    lc = torch.tensor([40, 2])
    got = m.interpolate_to_grid(centers, feats, xyz, k=3, out_size=(4, 6), lengths_centers=lc)
    ref = R.interpolate_to_grid(centers, feats, xyz, k=3, out_size=(4, 6), lengths_centers=lc)
    torch.testing.assert_close(got, ref)


def test_invalid_everywhere_gives_zeros():
    centers, feats, xyz, _ = _scene()
    out = m.interpolate_to_grid(centers, feats, torch.zeros_like(xyz), k=3, out_size=(4, 6))
    assert torch.equal(out, torch.zeros_like(out))
    out = m.interpolate_to_grid(centers, feats, xyz, k=3, lengths_centers=torch.tensor([0, 0]))
    assert torch.equal(out, torch.zeros_like(out))


def test_constant_features_give_constant_valid_cells():
    centers, _, xyz, valid = _scene()
    feats = torch.ones(2, 40, 3, dtype=torch.float64)
    out = m.interpolate_to_grid(centers, feats, xyz, valid, out_size=(4, 6))
    cell_has_valid = torch.nn.functional.max_pool2d(valid[:, None].double(), (4, 4)).bool()
    torch.testing.assert_close(out[cell_has_valid.expand_as(out)], torch.ones(int(cell_has_valid.sum()) * 3, dtype=torch.float64))


def test_gradcheck():
    centers, feats, xyz, valid = _scene(B=1, G=8, C=2, H=4, W=6)
    centers.requires_grad_(), feats.requires_grad_(), xyz.requires_grad_()
    fn = lambda c, f, x: m.interpolate_to_grid(c, f, x, valid, k=3, out_size=(2, 3), power=2.0)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (centers, feats, xyz))


@pytest.mark.parametrize("kw,exc,match", [
    (dict(out_size=(5, 6)), ValueError, r"out_size \(5, 6\) must divide the grid \(16, 24\)"),
    (dict(out_size=(32, 24)), ValueError, "must divide the grid"),
    (dict(out_size=(4, 6, 1)), TypeError, "out_size must be an int or a pair"),
    (dict(k=0), ValueError, "k must be >= 1"),
    (dict(valid=torch.ones(2, 16, 23, dtype=torch.bool)), ValueError, r"valid must have shape \(2, 16, 24\)"),
    (dict(valid=torch.ones(2, 16, 24)), TypeError, "valid must have dtype"),
    (dict(center_features=torch.randn(2, 39, 6)), ValueError, r"center_features must be \(B, G, C\) matching centers \(2, 40, 3\), got \(2, 39, 6\)"),
    (dict(xyz=torch.rand(2, 16, 24, 2)), ValueError, r"xyz must be \(B, H, W, 3\)"),
    (dict(xyz=torch.full((2, 16, 24, 3), float("nan"))), ValueError, "xyz contains NaN or Inf"),
])
def test_bad_input(kw, exc, match):
    centers, feats, xyz, _ = _scene(dtype=torch.float32)
    args = dict(centers=centers, center_features=feats, xyz=xyz)
    args.update(kw)
    with pytest.raises(exc, match=match):
        m.interpolate_to_grid(**args)


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_cpu_cuda_parity():
    centers, feats, xyz, valid = _scene(dtype=torch.float32)
    cpu = m.interpolate_to_grid(centers, feats, xyz, valid, out_size=(4, 6))
    gpu = m.interpolate_to_grid(centers.cuda(), feats.cuda(), xyz.cuda(), valid.cuda(), out_size=(4, 6))
    torch.testing.assert_close(cpu, gpu.cpu())
