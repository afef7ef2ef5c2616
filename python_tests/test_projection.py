"""points_to_grid / grid_to_points against the plain-torch references (scatter_reduce, grid_sample)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mentor3ad_ext as m
from mentor3ad_ext import reference as R

from conftest import DEVICES, FLOAT_DTYPES, HAS_CUDA

TOL = {torch.float32: dict(rtol=1e-6, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}
GRAD_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _pixels(B, N, H, W, device, p_skip=0.3, g=None):
    idx = torch.randint(0, H * W, (B, N), generator=g)
    idx[torch.rand(B, N, generator=g) < p_skip] = -1  # ragged: points without a pixel
    return idx.to(device)


# ----------------------------------------------------------------------------- points_to_grid

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("B,N,C,H,W", [(2, 300, 5, 6, 7), (1, 2000, 40, 16, 16), (3, 10, 1, 1, 1)])
def test_points_to_grid_matches_reference(device, dtype, reduce, B, N, C, H, W):
    feats = torch.randn(B, N, C, dtype=dtype, device=device)
    idx = _pixels(B, N, H, W, device)
    out, counts = m.points_to_grid(feats, idx, H, W, reduce, return_counts=True)
    ref, ref_counts = R.points_to_grid(feats, idx, H, W, reduce, return_counts=True)
    assert out.shape == (B, C, H, W) and out.dtype == dtype and out.is_contiguous()
    assert torch.equal(counts, ref_counts) and counts.dtype == torch.int64
    torch.testing.assert_close(out, ref, **TOL[dtype])
    # backward: sum/mean exact chain rule, max to the arg-max point only
    go = torch.randn_like(out)
    f1 = feats.clone().requires_grad_()
    f2 = feats.clone().requires_grad_()
    (m.points_to_grid(f1, idx, H, W, reduce) * go).sum().backward()
    (R.points_to_grid(f2, idx, H, W, reduce) * go).sum().backward()
    torch.testing.assert_close(f1.grad, f2.grad, **GRAD_TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
def test_points_to_grid_mean_is_exact_float64_mean(device):
    # float32 features: each pixel sums in float64 and rounds once (reference computed so too).
    feats = torch.randn(2, 5000, 3, device=device)
    idx = torch.randint(0, 4, (2, 5000), device=device)
    out = m.points_to_grid(feats, idx, 2, 2, "mean")
    ref = R.points_to_grid(feats.double(), idx, 2, 2, "mean").float()
    assert torch.equal(out, ref)


@pytest.mark.parametrize("device", DEVICES)
def test_points_to_grid_max_ties_go_to_lowest_point(device):
    feats = torch.tensor([[[1.0, 7.0], [4.0, 7.0], [4.0, 2.0], [9.0, 9.0]]], device=device, requires_grad=True)
    idx = torch.tensor([[5, 5, 5, -1]], device=device)
    out = m.points_to_grid(feats, idx, 2, 3, "max")
    assert out[0, :, 1, 2].tolist() == [4.0, 7.0] and out.sum().item() == 11.0
    out.sum().backward()
    assert feats.grad[0].tolist() == [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_points_to_grid_gradcheck(device, reduce):
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 12, 3, dtype=torch.float64, generator=g).to(device).requires_grad_()
    idx = _pixels(2, 12, 2, 3, device, g=g)
    assert torch.autograd.gradcheck(lambda f: m.points_to_grid(f, idx, 2, 3, reduce), (feats,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_points_to_grid_empty_gives_zeros(device, reduce):
    for idx in (torch.full((2, 9), -1, device=device), torch.zeros(2, 0, dtype=torch.int64, device=device)):
        feats = torch.randn(2, idx.shape[1], 4, device=device, requires_grad=True)
        out, counts = m.points_to_grid(feats, idx, 3, 5, reduce, return_counts=True)
        assert torch.equal(out, torch.zeros(2, 4, 3, 5, device=device)) and not counts.any()
        out.sum().backward()
        assert torch.equal(feats.grad, torch.zeros_like(feats))
    assert m.points_to_grid(torch.randn(0, 5, 4, device=device), torch.zeros(0, 5, dtype=torch.int64, device=device),
                            3, 5, reduce).shape == (0, 4, 3, 5)


@pytest.mark.parametrize("device", DEVICES)
def test_points_to_grid_non_contiguous_half_and_int32(device):
    base = torch.randn(2, 8, 500, device=device)
    feats = base.transpose(1, 2)  # (2, 500, 8), channel stride 500
    idx = _pixels(2, 500, 10, 10, device)
    ref = R.points_to_grid(feats.contiguous(), idx, 10, 10, "sum")
    torch.testing.assert_close(m.points_to_grid(feats, idx, 10, 10, "sum"), ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(m.points_to_grid(feats, idx.int(), 10, 10, "sum"), m.points_to_grid(feats, idx, 10, 10, "sum"))
    half = feats.half()
    out = m.points_to_grid(half, idx, 10, 10, "mean")
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, R.points_to_grid(half.float(), idx, 10, 10, "mean").half())


@pytest.mark.parametrize("kw,exc,match", [
    (dict(pixel_index=torch.tensor([[0, 12, 3]])), ValueError,
     r"pixel_index must lie in \[0, 12\) or be -1 \(skip\), got 12 at index \(0, 1\)"),
    (dict(pixel_index=torch.tensor([[0, -5, 3]])), ValueError, r"got -5 at index \(0, 1\)"),
    (dict(pixel_index=torch.tensor([[0, 1]])), ValueError,
     r"pixel_index must have shape \(B, N\) = \(1, 3\) to match features of shape \(1, 3, 2\), "
     r"got pixel_index of shape \(1, 2\)"),
    (dict(pixel_index=torch.tensor([[0.0, 1.0, 2.0]])), TypeError, "pixel_index must be an integer tensor"),
    (dict(features=torch.zeros(1, 3, 2, dtype=torch.int64)), TypeError, "features must have dtype"),
    (dict(features=torch.randn(3, 2)), ValueError, r"features must be a 3-D tensor \(B, N, C\), got shape \(3, 2\)"),
    (dict(reduce="median"), ValueError, "reduce must be one of"),
    (dict(height=0), ValueError, "height must be >= 1, got 0"),
    (dict(width=2.5), TypeError, "width must be an int"),
])
def test_points_to_grid_bad_input(kw, exc, match):
    args = dict(features=torch.randn(1, 3, 2), pixel_index=torch.tensor([[0, 1, -1]]), height=3, width=4)
    args.update(kw)
    with pytest.raises(exc, match=match):
        m.points_to_grid(**args)


def test_points_to_grid_value_checks_off_never_reads_out_of_bounds():
    with m.value_checks(False):
        out = m.points_to_grid(torch.ones(1, 3, 2), torch.tensor([[0, 99, -7]]), 2, 2, "sum")
    assert out[0, :, 0, 0].tolist() == [1.0, 1.0] and out.sum().item() == 2.0  # bad entries skipped


# ----------------------------------------------------------------------------- grid_to_points

def _uv(B, N, H, W, dtype, device, margin=1.5, g=None):
    lo = torch.tensor([-margin, -margin], dtype=dtype)
    span = torch.tensor([W + 2 * margin, H + 2 * margin], dtype=dtype)
    return (torch.rand(B, N, 2, dtype=dtype, generator=g) * span + lo).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("align_corners", [False, True])
# (1, 6, 28, 28, 50): a grid larger than 4 x the points is read in place (strided), the others
# from a channels-last copy.
@pytest.mark.parametrize("B,C,H,W,N", [(2, 5, 6, 9, 400), (1, 70, 28, 28, 1000), (2, 3, 1, 4, 50),
                                       (1, 6, 28, 28, 50)])
def test_grid_to_points_matches_grid_sample(device, dtype, mode, align_corners, B, C, H, W, N):
    grid = torch.randn(B, C, H, W, dtype=dtype, device=device)
    uv = _uv(B, N, H, W, dtype, device)
    if mode == "nearest":  # keep clear of rounding boundaries (grid_sample rounds after its own
        uv = (uv * 8).round() / 8 + 1 / 32  # float normalise / unnormalise; exact ties: separate test)
    out = m.grid_to_points(grid, uv, mode, align_corners)
    # float32 grid_sample normalises and unnormalises coordinates in float32, which moves them by
    # ~1e-7 * W; the fused op works in float64 inside. Compare to 1e-6 against grid_sample run in
    # float64 (same conventions), and loosely against float32 grid_sample itself.
    ref = R.grid_to_points(grid.double(), uv.double(), mode, align_corners).to(dtype)
    assert out.shape == (B, N, C) and out.dtype == dtype
    torch.testing.assert_close(out, ref, **TOL[dtype])
    torch.testing.assert_close(out, R.grid_to_points(grid, uv, mode, align_corners), rtol=1e-5, atol=1e-5)
    g1, u1 = grid.clone().requires_grad_(), uv.clone().requires_grad_()
    g2, u2 = grid.double().requires_grad_(), uv.double().requires_grad_()
    go = torch.randn(B, N, C, dtype=dtype, device=device)
    a = torch.autograd.grad((m.grid_to_points(g1, u1, mode, align_corners) * go).sum(), (g1, u1))
    r = torch.autograd.grad((R.grid_to_points(g2, u2, mode, align_corners) * go.double()).sum(), (g2, u2))
    torch.testing.assert_close(a[0], r[0].to(dtype), **GRAD_TOL[dtype])
    torch.testing.assert_close(a[1], r[1].to(dtype), **GRAD_TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
def test_grid_to_points_pixel_convention(device):
    H, W = 3, 4
    grid = torch.arange(H * W, dtype=torch.float64, device=device).view(1, 1, H, W)
    # align_corners=False: centre of pixel (row 1, col 2) is (2.5, 1.5); (0, 0) is the top-left corner.
    uv = torch.tensor([[[2.5, 1.5], [0.0, 0.0], [3.0, 1.5], [4.0, 3.0]]], dtype=torch.float64, device=device)
    out = m.grid_to_points(grid, uv)[0, :, 0].tolist()
    assert out == [6.0, 0.25 * 0.0, 6.5, 0.25 * 11.0]
    # align_corners=True: integer coordinates are pixel centres.
    uv = torch.tensor([[[2.0, 1.0], [0.5, 0.0], [3.0, 2.0]]], dtype=torch.float64, device=device)
    assert m.grid_to_points(grid, uv, align_corners=True)[0, :, 0].tolist() == [6.0, 0.5, 11.0]
    # nearest: half-way coordinates round half to even, like grid_sample's nearbyint
    uv = torch.tensor([[[1.0, 0.5], [2.0, 0.5], [0.5, 1.0]]], dtype=torch.float64, device=device)  # ix = 0.5, 1.5
    got = m.grid_to_points(grid, uv, "nearest")
    ref = R.grid_to_points(grid, uv, "nearest")
    assert torch.equal(got, ref) and got[0, :, 0].tolist() == [0.0, 2.0, 0.0]


@pytest.mark.parametrize("device", DEVICES)
def test_grid_to_points_far_outside_and_channels_last_input(device):
    grid = torch.randn(2, 6, 5, 7, device=device).to(memory_format=torch.channels_last)
    uv = torch.tensor([[[1e30, 2.0], [-1e30, -1e30], [3.1, 2.2]], [[7.9, 0.5], [2.0, 5.6], [0.2, -0.9]]], device=device)
    out = m.grid_to_points(grid, uv)
    torch.testing.assert_close(out, R.grid_to_points(grid.contiguous(), uv), rtol=1e-6, atol=1e-6)
    assert not out[0, :2].any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_to_points_gradcheck(device, mode, align_corners):
    g = torch.Generator().manual_seed(4)
    grid = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=g).to(device).requires_grad_()
    uv = _uv(2, 10, 4, 5, torch.float64, device, margin=0.7, g=g)
    uv = (uv + 0.013 * (uv.frac() < 0.02)).requires_grad_()  # away from kinks for finite differences
    assert torch.autograd.gradcheck(lambda a, b: m.grid_to_points(a, b, mode, align_corners), (grid, uv))


@pytest.mark.parametrize("device", DEVICES)
def test_grid_to_points_empty(device):
    grid = torch.randn(2, 3, 4, 5, device=device, requires_grad=True)
    out = m.grid_to_points(grid, torch.zeros(2, 0, 2, device=device))
    assert out.shape == (2, 0, 3)
    out.sum().backward()
    assert torch.equal(grid.grad, torch.zeros_like(grid))
    outside = m.grid_to_points(grid, torch.full((2, 4, 2), -3.0, device=device))
    assert torch.equal(outside, torch.zeros(2, 4, 3, device=device))


@pytest.mark.parametrize("kw,exc,match", [
    (dict(uv=torch.randn(1, 5, 3)), ValueError,
     r"uv must have shape \(B, N, 2\) with B = 1 to match grid of shape \(1, 2, 3, 4\), got uv of shape \(1, 5, 3\)"),
    (dict(uv=torch.randn(2, 5, 2)), ValueError, r"got uv of shape \(2, 5, 2\)"),
    (dict(uv=torch.randn(1, 5, 2, dtype=torch.float64)), TypeError, "uv dtype float64 differs from grid dtype float32"),
    (dict(grid=torch.randn(2, 3, 4)), ValueError, r"grid must be a 4-D tensor \(B, C, H, W\), got shape \(2, 3, 4\)"),
    (dict(grid=torch.zeros(1, 2, 3, 4, dtype=torch.int32)), TypeError, "grid must have dtype"),
    (dict(mode="bicubic"), ValueError, "mode must be one of"),
    (dict(align_corners=1), TypeError, "align_corners must be a bool"),
    (dict(uv=torch.tensor([[[0.0, float("nan")]]])), ValueError, r"uv contains NaN or Inf \(first at index \(0, 0, 1\)\)"),
])
def test_grid_to_points_bad_input(kw, exc, match):
    args = dict(grid=torch.randn(1, 2, 3, 4), uv=torch.rand(1, 5, 2))
    args.update(kw)
    with pytest.raises(exc, match=match):
        m.grid_to_points(**args)


def test_grid_to_points_nan_with_checks_off_samples_nothing():
    with m.value_checks(False):
        out = m.grid_to_points(torch.ones(1, 2, 3, 4), torch.tensor([[[float("nan"), 1.0], [1.0, 1.0]]]))
    assert out[0, 0].tolist() == [0.0, 0.0] and out[0, 1].tolist() == [1.0, 1.0]


# ----------------------------------------------------------------------------- ops, compile, devices

def test_opcheck():
    uv = torch.rand(2, 7, 2) * 5 - 0.5
    for bilinear in (True, False):
        torch.library.opcheck(torch.ops.mentor3ad.pixel_corners, (uv.clone().requires_grad_(), 4, 5, bilinear, False))
    torch.library.opcheck(torch.ops.mentor3ad.pixel_corners_backward, (uv, torch.randn(2, 28), 4, 5, True))


def test_torch_compile():
    feats = torch.randn(2, 100, 6)
    idx = torch.randint(-1, 20, (2, 100))
    grid = torch.randn(2, 6, 4, 5, requires_grad=True)
    uv = torch.rand(2, 30, 2) * 5

    def f(grid):
        img = m.points_to_grid(feats, idx, 4, 5, "mean") + grid
        return m.grid_to_points(img, uv).sum()

    compiled = torch.compile(f, fullgraph=False)
    got = compiled(grid)
    (g_got,) = torch.autograd.grad(got, grid)
    want = f(grid)
    (g_want,) = torch.autograd.grad(want, grid)
    torch.testing.assert_close(got, want)  # the final .sum() may be reordered by inductor
    assert torch.equal(g_got, g_want)


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cpu_cuda_bit_identical(dtype):
    B, N, C, H, W = 2, 20_000, 48, 56, 56
    feats = torch.randn(B, N, C, dtype=dtype)
    idx = _pixels(B, N, H, W, "cpu")
    grid = torch.randn(B, C, H, W, dtype=dtype)
    uv = _uv(B, N, H, W, dtype, "cpu")

    def run(device):
        f = feats.to(device).requires_grad_()
        g = grid.to(device).requires_grad_()
        u = uv.to(device).requires_grad_()
        outs = [m.points_to_grid(f, idx.to(device), H, W, r) for r in ("sum", "mean", "max")]
        outs.append(m.grid_to_points(g, u))
        outs.append(m.grid_to_points(g, u, "nearest", True))
        grads = torch.autograd.grad(sum((o * o).sum() for o in outs), (f, g, u))
        return [o.detach().cpu() for o in outs] + [x.cpu() for x in grads]

    for a, b in zip(run("cpu"), run("cuda")):
        assert torch.equal(a, b)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(0, 2), N=st.integers(0, 80), C=st.integers(1, 6), H=st.integers(1, 5), W=st.integers(1, 5),
       reduce=st.sampled_from(["sum", "mean", "max"]), seed=st.integers(0, 2**16))
def test_property_points_to_grid(B, N, C, H, W, reduce, seed):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randint(-2, 3, (B, N, C), generator=g).double()  # ties for max
    idx = _pixels(B, N, H, W, "cpu", g=g)
    out, counts = m.points_to_grid(feats, idx, H, W, reduce, return_counts=True)
    ref, ref_counts = R.points_to_grid(feats, idx, H, W, reduce, return_counts=True)
    assert torch.equal(out, ref) and torch.equal(counts, ref_counts)
