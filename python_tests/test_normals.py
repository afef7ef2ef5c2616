import numpy as np
import pytest
import torch

import mentor3ad_ext as m
from mentor3ad_ext import reference as R

from _surfaces import angle_deg, cylinder, plane, sphere, wavy_surface
from conftest import DEVICES, FLOAT_DTYPES

try:
    import open3d as o3d
except Exception:  # pragma: no cover - depends on the environment (libusb, glibc, ...)
    o3d = None


def _tol(dtype):
    return 1e-4 if dtype == torch.float32 else 1e-10


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("radius", [None, 0.09])
def test_matches_reference(device, dtype, radius):
    pts = torch.stack([wavy_surface(160, seed=1), wavy_surface(160, seed=2)]).to(dtype)
    lengths = torch.tensor([160, 97])
    kw = dict(k=12, radius=radius, viewpoint=(0.5, 0.5, -1.0), return_curvature=True)
    n, c = m.estimate_normals(pts.to(device), lengths.to(device), **kw)
    rn, rc = R.estimate_normals(pts, lengths, **kw)
    assert n.dtype == dtype and n.shape == (2, 160, 3) and c.shape == (2, 160)
    torch.testing.assert_close(n.cpu(), rn, atol=_tol(dtype), rtol=0)
    torch.testing.assert_close(c.cpu(), rc, atol=_tol(dtype), rtol=0)
    assert (n[1, 97:] == 0).all() and (c[1, 97:] == 0).all()  # padding
    if radius is not None:  # the radius leaves some points with < 3 neighbours: both paths run
        assert (rn[0].norm(dim=-1) == 0).any() and (rn[0].norm(dim=-1) > 0).any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_analytic_surfaces(device, dtype):
    # Plane: exact up to rounding. Sphere and cylinder: the PCA normal of a small patch is radial
    # up to the tilt from an uneven random sampling of the patch (~ patch radius / curvature radius).
    pts, true_n = plane(2000)
    vp = (pts[0] + 10 * true_n[0]).tolist()  # camera on the normal's side
    n = m.estimate_normals(pts.to(device, dtype)[None], k=20, viewpoint=vp)[0].cpu().double()
    assert (n - true_n).abs().max() < (1e-5 if dtype == torch.float32 else 1e-12)
    pts, true_n = sphere(20000)
    n = m.estimate_normals(pts.to(device, dtype)[None], k=30, viewpoint=(0, 0, 0))[0].cpu().double()
    err = angle_deg(n, -true_n)  # oriented towards the centre
    assert err.max() < 2.5 and err.mean() < 0.5
    pts, true_n = cylinder(20000, radius=1.0)
    n = m.estimate_normals(pts.to(device, dtype)[None], k=30, viewpoint=(0, 0, 50))[0].cpu().double()
    err = angle_deg(n, true_n, up_to_sign=True)[pts[:, 2].abs() < 0.8]  # away from the rims
    assert err.max() < 2.5 and err.mean() < 0.5
    c = m.estimate_normals(pts.to(device, dtype)[None], k=30, return_curvature=True)[1]
    assert (c > 0).all() and (c < 0.05).all()  # curved, but nearly flat at this scale


@pytest.mark.parametrize("device", DEVICES)
def test_orientation(device):
    pts = wavy_surface(500).to(device)[None]
    vp = torch.tensor([0.3, 0.8, -2.0], dtype=torch.float64)
    n = m.estimate_normals(pts, k=10, viewpoint=vp)
    assert ((n * (vp.to(device) - pts)).sum(-1) >= 0).all()
    free = m.estimate_normals(pts, k=10, orient=None)
    torch.testing.assert_close(free.abs(), n.abs())
    flipped = m.estimate_normals(pts, k=10, viewpoint=(0.3, 0.8, 5.0))
    torch.testing.assert_close(flipped, -n)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_orientation_to_a_direction(device, dtype):
    # orient="direction": dot(n, direction) >= 0 (open3d's orient_normals_to_align_with_direction),
    # the same normals up to sign, zero normals (a duplicate cluster) stay zero; the organized
    # variant too. The direction is ignored by the other modes.
    pts = torch.stack([wavy_surface(400, seed=7), wavy_surface(400, seed=8)]).to(dtype)
    pts[1, :5] = pts[1, 5]  # six coincident points: fewer than 3 distinct -> zero normals at k = 4
    lengths = torch.tensor([400, 350])
    d = (0.3, -0.2, -1.0)
    kw = dict(k=4, orient="direction", direction=d)
    n = m.estimate_normals(pts.to(device), lengths.to(device), **kw)
    free = m.estimate_normals(pts.to(device), lengths.to(device), k=4, orient=None)
    dot = (n.double() * torch.tensor(d, dtype=torch.float64, device=device)).sum(-1)
    assert (dot >= 0).all() and (n.norm(dim=-1) == 0).any()
    assert torch.equal(n.abs(), free.abs()) and ((n == free).all(-1) | (n == -free).all(-1)).all()
    assert torch.equal(m.estimate_normals(pts.to(device), lengths.to(device), k=4, orient=None, direction=d), free)
    torch.testing.assert_close(n.cpu(), R.estimate_normals(pts, lengths, **kw), atol=_tol(dtype), rtol=0)
    xyz = pts[0].reshape(1, 20, 20, 3).to(device)
    torch.testing.assert_close(m.estimate_normals_organized(xyz, k=4, orient="direction", direction=d).reshape(1, 400, 3),
                               m.estimate_normals(xyz.reshape(1, 400, 3), k=4, orient="direction", direction=d))


@pytest.mark.skipif(o3d is None, reason="open3d not importable")
def test_direction_orientation_matches_open3d():
    pts = wavy_surface(2000, seed=9)
    d = np.array([0.2, 0.5, -1.0])
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.numpy()))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(30))
    pc.orient_normals_to_align_with_direction(d)
    ref = torch.from_numpy(np.asarray(pc.normals))
    got = m.estimate_normals(pts[None], k=30, orient="direction", direction=d)[0]
    has = got.norm(dim=-1) > 0
    assert has.float().mean() > 0.99
    assert (got[has] - ref[has]).abs().max() < 1e-9


@pytest.mark.parametrize("device", DEVICES)
def test_degenerate_neighbourhoods_are_zero_never_nan(device):
    line = torch.linspace(0, 1, 50, dtype=torch.float64)[:, None] * torch.tensor([[1.0, 2.0, -0.5]], dtype=torch.float64)
    dup = torch.full((50, 3), 0.25, dtype=torch.float64)
    plane_pts, _ = plane(50)
    pts = torch.stack([line, dup, plane_pts]).to(device)
    n, c = m.estimate_normals(pts, k=8, return_curvature=True)
    assert torch.isfinite(n).all() and torch.isfinite(c).all()
    assert (n[0] == 0).all() and (c[0] == 0).all()  # collinear
    assert (n[1] == 0).all() and (c[1] == 0).all()  # coincident
    assert torch.allclose(n[2].norm(dim=-1), torch.ones(50, dtype=torch.float64, device=device))
    # Fewer than 3 neighbours: k < 3, a 2-point cloud, a radius that isolates every point.
    assert (m.estimate_normals(plane_pts[None].to(device), k=2) == 0).all()
    assert (m.estimate_normals(plane_pts[None, :2].to(device), k=30) == 0).all()
    assert (m.estimate_normals(plane_pts[None].to(device), k=30, radius=1e-4) == 0).all()
    # Empty clouds and zero lengths.
    assert m.estimate_normals(torch.zeros(2, 0, 3, device=device)).shape == (2, 0, 3)
    out = m.estimate_normals(pts, torch.tensor([0, 50, 3], device=device), k=8)
    assert (out[0] == 0).all() and (out[2, 3:] == 0).all()


def test_half_input_noncontiguous_and_no_grad():
    pts = wavy_surface(300)[None].float()
    ref = m.estimate_normals(pts, k=10)
    got = m.estimate_normals(pts.half(), k=10)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    t = pts.transpose(1, 2).contiguous().transpose(1, 2)
    assert not t.is_contiguous()
    torch.testing.assert_close(m.estimate_normals(t, k=10), ref)
    g = pts.clone().requires_grad_(True)
    out = m.estimate_normals(g, k=10)
    assert not out.requires_grad


@pytest.mark.parametrize("device", DEVICES)
def test_organized_matches_unorganized(device):
    H, W = 24, 30
    yy, xx = torch.meshgrid(torch.linspace(-0.1, 0.1, H), torch.linspace(-0.12, 0.12, W), indexing="ij")
    zz = 0.4 + 0.02 * torch.sin(20 * xx) * torch.cos(15 * yy)
    xyz = torch.stack([xx, yy, zz], -1).double()[None].repeat(2, 1, 1, 1)
    valid = torch.rand(2, H, W) > 0.3
    xyz[1][~valid[1]] = 0.0  # holes as in MVTec 3D-AD: the default mask finds them
    xyz[0][~valid[0]] = float("nan")  # an explicit mask may hide anything
    n, c = m.estimate_normals_organized(xyz.to(device), valid.to(device), k=9, return_curvature=True)
    assert n.shape == (2, H, W, 3) and c.shape == (2, H, W)
    assert (n[~valid.to(device)] == 0).all() and (c[~valid.to(device)] == 0).all()
    for b in range(2):
        pts = xyz[b][valid[b]][None]
        ref = m.estimate_normals(pts.to(device), k=9)[0]
        torch.testing.assert_close(n[b][valid[b].to(device)], ref)
    n1 = m.estimate_normals_organized(xyz[1:].to(device), k=9)  # default mask: non-zero pixels
    torch.testing.assert_close(n1[0], n[1])
    assert (n[valid.to(device)].norm(dim=-1) > 0.99).all()
    assert (n[valid.to(device)][:, 2] < 0).all()  # facing the camera at the origin


@pytest.mark.skipif(o3d is None, reason="open3d not importable")
@pytest.mark.parametrize("radius", [None, 0.05])
def test_matches_open3d(radius):
    pts = wavy_surface(3000, seed=3)
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.numpy()))
    param = o3d.geometry.KDTreeSearchParamKNN(30) if radius is None else o3d.geometry.KDTreeSearchParamHybrid(radius, 30)
    pc.estimate_normals(param)
    pc.orient_normals_towards_camera_location(np.zeros(3))
    ref = torch.from_numpy(np.asarray(pc.normals))
    got = m.estimate_normals(pts[None], k=30, radius=radius)[0]
    has = got.norm(dim=-1) > 0  # open3d gives an arbitrary axis where we give zero
    assert has.float().mean() > 0.99
    assert (got[has] - ref[has]).abs().max() < 1e-9


@pytest.mark.parametrize("call, exc, match", [
    (lambda: m.estimate_normals(torch.rand(2, 10)), ValueError, r"points must be a 3-D tensor.*got shape \(2, 10\)"),
    (lambda: m.estimate_normals(torch.rand(1, 10, 2)), ValueError, r"3 coordinates.*got shape \(1, 10, 2\)"),
    (lambda: m.estimate_normals(torch.randint(0, 5, (1, 10, 3))), TypeError, "points must have dtype"),
    (lambda: m.estimate_normals(torch.rand(1, 10, 3), k=0), ValueError, "k must be >= 1, got 0"),
    (lambda: m.estimate_normals(torch.rand(1, 10, 3), radius=-1.0), ValueError, "radius must be a finite number > 0"),
    (lambda: m.estimate_normals(torch.rand(1, 10, 3), orient="camera"), ValueError,
     "orient must be 'viewpoint', 'direction' or None, got 'camera'"),
    (lambda: m.estimate_normals(torch.rand(1, 10, 3), orient="direction", direction=(0, 0, 0)), ValueError,
     r"direction must not be the zero vector, got \(0, 0, 0\)"),
    (lambda: m.estimate_normals(torch.rand(1, 10, 3), orient="direction", direction=(1, float("nan"), 0)), ValueError,
     "direction must be 3 finite numbers"),
    (lambda: m.estimate_normals_organized(torch.rand(1, 4, 4, 3), orient="direction", direction="up"), TypeError,
     "direction must be a sequence of 3 numbers, got 'up'"),
    (lambda: m.estimate_normals(torch.rand(1, 10, 3), viewpoint=(0, 0)), ValueError, "viewpoint must be 3 finite numbers"),
    (lambda: m.estimate_normals(torch.rand(1, 10, 3), torch.tensor([11])), ValueError, r"lengths must lie in \[0, 10\]"),
    (lambda: m.estimate_normals(torch.full((1, 4, 3), float("nan"))), ValueError, "points contains NaN or Inf"),
    (lambda: m.estimate_normals_organized(torch.rand(1, 4, 4, 2)), ValueError, r"xyz must have shape \(B, H, W, 3\).*\(1, 4, 4, 2\)"),
    (lambda: m.estimate_normals_organized(torch.rand(1, 4, 4, 3), torch.ones(1, 4, 5, dtype=torch.bool)), ValueError,
     r"valid must have shape \(1, 4, 4\).*got \(1, 4, 5\)"),
    (lambda: m.estimate_normals_organized(torch.rand(1, 4, 4, 3), torch.ones(1, 4, 4)), TypeError, "valid must have dtype"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_opcheck():
    from mentor3ad_ext.ops.normals import neighbourhoods
    pts = wavy_surface(64)[None]
    lengths = torch.tensor([50])
    idx, dists, order = neighbourhoods(pts, lengths, 8)
    torch.library.opcheck(torch.ops.mentor3ad.normals_from_neighbors, (pts, idx, dists, order, 0.01, True, [0.0, 0.0, 0.0]))
    torch.library.opcheck(torch.ops.mentor3ad.normals_search, (pts, lengths, 8, 0.01, True, [0.0, 0.0, 0.0]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("radius", [None, 0.06])
def test_from_neighbors_reads_row_prefixes_in_place(device, radius):
    # fpfh_organized hands the normals the prefix idx[..., :k] of FPFH's longer rows (a view, read
    # at the rows' stride) and, on the CPU, int32 lists: the bits of the contiguous int64 prefix.
    from mentor3ad_ext.ops._launch import host_kernels
    from mentor3ad_ext.ops.normals import _normals, _radius2, neighbourhoods

    pts = torch.stack([wavy_surface(700, seed=5), wavy_surface(700, seed=6)]).double().to(device)
    lengths = torch.tensor([700, 520], device=device)
    idx, dists, order = neighbourhoods(pts, lengths, 24)
    r2, vp = _radius2(radius), [0.5, 0.5, -1.0]
    k = 10
    want = _normals(pts, idx[..., :k].contiguous(), dists[..., :k].contiguous(), order, r2, True, vp)
    assert (want[0].norm(dim=-1) > 0).any()
    for got in (_normals(pts, idx[..., :k], dists[..., :k], order, r2, True, vp),
                _normals(pts, idx.transpose(1, 2).contiguous().transpose(1, 2)[..., :k], dists[..., :k], order,
                         r2, True, vp)):  # rows not evenly spaced in one buffer: copied first
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    if host_kernels(pts) and radius is None:
        got = _normals(pts, idx.int()[..., :k], dists.new_empty(0), order, -1.0, True, vp)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    with pytest.raises(TypeError, match="idx must have dtype in \\(int32, int64\\), got float32"):
        _normals(pts, idx.float(), dists, order, r2, True, vp)
    if not host_kernels(pts):
        with pytest.raises(ValueError, match="int32 neighbour lists are served by the CPU kernels only"):
            _normals(pts, idx.int(), dists, order, r2, True, vp)


def _two_step(pts, lengths, k, radius, viewpoint):
    """knn_points + the normals-from-neighbours kernel: what the CPU's searching kernel replaces."""
    from mentor3ad_ext.ops.normals import _normals, _radius2, neighbourhoods

    idx, dists, order = neighbourhoods(pts, lengths, k)
    return _normals(pts, idx, dists, order, _radius2(radius), True, list(viewpoint))


# On the CPU, estimate_normals searches the neighbourhoods inside its kernel (cell grid for
# clouds of >= 2048 points, else the KD-tree; a heap beyond k = 48; with a radius the search
# stops at it) and must give exactly the bits of the two-step path (unbounded), on every path.
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n,k,radius", [(3000, 30, None), (3000, 30, 0.03), (3000, 64, None),
                                        (3000, 64, 0.03), (600, 12, None), (600, 12, 0.05),
                                        (2500, 3000, None)])
def test_cpu_search_kernel_equals_knn_then_pca(dtype, n, k, radius):
    pts = torch.stack([wavy_surface(n, seed=3), wavy_surface(n, seed=4)]).to(dtype)
    pts[1, 5] = pts[1, 6]  # a duplicate point
    lengths = torch.tensor([n, n - 400])
    vp = (0.5, 0.5, -1.0)
    n_got, c_got = m.estimate_normals(pts, lengths, k=k, radius=radius, viewpoint=vp, return_curvature=True)
    n_ref, c_ref = _two_step(pts, lengths, k, radius, vp)
    assert torch.equal(n_got, n_ref) and torch.equal(c_got, c_ref)
    assert (n_got[1, n - 400:] == 0).all() and (c_got[1, n - 400:] == 0).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_batched_grid_searches_equal_one_cloud_at_a_time(threads):
    # With at least two clouds of about equal size per thread, the CPU grid searches (kNN and the
    # normals' own search) run whole clouds in parallel (common/parallel.h, for_clouds), else one
    # cloud at a time on all threads: the same bits either way, and as searching each alone.
    old = m.get_num_threads()
    m.set_num_threads(threads)
    try:
        pts = torch.stack([wavy_surface(3000, seed) for seed in range(4)]).double()
        lengths = torch.tensor([3000, 2900, 2800, 3000])
        knn = m.knn_points(pts, pts, lengths, lengths, K=12)
        nrm = m.estimate_normals(pts, lengths, k=12)
        for b in range(4):
            n = int(lengths[b])
            one = m.knn_points(pts[b:b + 1, :n], pts[b:b + 1, :n], K=12)
            assert torch.equal(knn.idx[b, :n], one.idx[0]) and torch.equal(knn.dists[b, :n], one.dists[0])
            assert torch.equal(nrm[b, :n], m.estimate_normals(pts[b:b + 1, :n], k=12)[0])
    finally:
        m.set_num_threads(old)
