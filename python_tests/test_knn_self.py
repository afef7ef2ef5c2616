"""The self-search of the descriptor ops (ops/_knn_self.py): one sorted plan for a cloud against
itself, and the float32 filter of float64 searches (csrc/knn/knn_rerank.h). Both must give the
rows of the general search bit for bit. Under the CUDA emulator the "cpu" cases run the CUDA
kernels."""
import importlib
import math

import pytest
import torch

from conftest import DEVICES, FLOAT_DTYPES

import mentor3ad_ext as m
import mentor3ad_ext.ops._tiles as tiles
from mentor3ad_ext.ops._knn_self import _knn_self
from mentor3ad_ext.ops._spatial import gather_points, spatial_order
from mentor3ad_ext.reference import knn as reference


def _general(points, lengths, K, max_dist=math.inf, order=None):
    """The rows of the general search: the scan over the queries in `order` (by default the
    spatial order; on the CPU that one is computed by another kernel, csrc/knn/morton_order.h, so
    its ties may order differently), cut at max_dist."""
    order = spatial_order(points, lengths) if order is None else order
    d, i, _ = reference.knn_points(gather_points(points, order), points, lengths, lengths, K)
    if max_dist < math.inf:
        inside = d < torch.tensor(max_dist, dtype=d.dtype)
        d, i = torch.where(inside, d, 0), torch.where(inside, i, -1)
    return d, i, order


def _assert_same(got, want, what):
    for name, g, w in zip(("dists", "idx", "order"), got, want):
        assert torch.equal(g, w), f"{what}: {name} differ in {int((g != w).sum())} entries"


def _check(points, lengths, K, max_dist, mode, what, cache=None):
    """_knn_self's rows are the general search's over the queries in its order, a permutation of
    each cloud that lists the valid points first. `cache`: a dict for the general rows of calls
    that differ in `mode` only."""
    got = _knn_self(points, lengths, K, max_dist, mode)
    order = got[2]
    rows = torch.arange(points.shape[1], device=order.device)
    assert torch.equal(order.sort(1).values, rows.expand_as(order)), what
    assert torch.equal(order < lengths[:, None], rows < lengths[:, None]), what
    cache = {} if cache is None else cache
    key = (K, max_dist, order.cpu().numpy().tobytes())
    if key not in cache:
        cache[key] = _general(points, lengths, K, max_dist, order)
    _assert_same(got, cache[key], what)
    return got


def _shells(n_shells: int, gen, jitter: float, offset: float) -> torch.Tensor:
    """Clouds where float32 cannot rank a row's K-th neighbour: around each centre, 28 points at
    distance 0.3 (with the centre, 29 sure neighbours) and 12 at distance 1 within `jitter`,
    far below float32's resolution at `offset`."""
    out = []
    for s in range(n_shells):
        c = torch.tensor([offset + 50.0 * s, offset, -offset], dtype=torch.float64)
        inner = torch.nn.functional.normalize(torch.randn(28, 3, generator=gen, dtype=torch.float64), dim=1) * 0.3
        outer = torch.nn.functional.normalize(torch.randn(12, 3, generator=gen, dtype=torch.float64), dim=1)
        outer = outer * (1 + jitter * torch.rand(12, 1, generator=gen, dtype=torch.float64))
        out.append(torch.cat([c[None], c + inner, c + outer]))
    return torch.cat(out)


def _clouds(gen, dtype):
    """(points (B, P, 3), lengths): random, lattice with duplicates, tiny, wide and far-off
    coordinates, shells float32 cannot rank, ragged, short and empty clouds."""
    P = 900  # any size takes the tiles here (the rules for when they pay are knn.py's)
    ax = torch.arange(8.0, dtype=torch.float64)
    lattice = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    lat = torch.cat([lattice, lattice[:P - len(lattice)]])[torch.randperm(P, generator=gen)]  # duplicates
    rnd = torch.rand(P, 3, generator=gen, dtype=torch.float64)
    shells = _shells(P // 41 + 1, gen, 1e-9, 1000.0)[:P]
    clouds = torch.stack([rnd, lat, rnd * 1e-4, torch.randn(P, 3, generator=gen, dtype=torch.float64) * 1e3,
                          rnd + 1e6, shells, rnd, rnd])
    lengths = torch.tensor([P, P - 3, P, P, P, P, 20, 0])
    return clouds.to(dtype), lengths


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_self_search_gives_the_general_rows(device, dtype):
    gen = torch.Generator().manual_seed(5)
    points, lengths = _clouds(gen, dtype)
    points, lengths = points.to(device), lengths.to(device)
    cache = {}
    for K in (1, 4, 17, 30, 31, 33, 100):
        modes = (0, 1, 2, 3) if dtype == torch.float64 and K < 32 else (0, 1, 2)
        for mode in modes:  # by size; thread lists; warp lists; the float32 filter
            _check(points, lengths, K, math.inf, mode, f"K = {K}, mode {mode}", cache)
    for K in (4, 30, 100):
        _check(points, lengths, K, 0.04, 0, f"bounded, K = {K}")


def _count_undecided(monkeypatch):
    """Makes the filter's float64 pass record how many rows it had to search."""
    seen = []
    kernel = tiles.tiles_kernel

    def spy(*args):
        if len(args) > 15:  # (..., max_dist, todo)
            seen.append(int(args[15].sum()))
        kernel(*args)

    monkeypatch.setattr(tiles, "tiles_kernel", spy)
    return seen


@pytest.mark.parametrize("device", DEVICES)
def test_float32_filter_decides_generic_rows_and_defers_the_rest(device, monkeypatch):
    # The rerank's bound must be tight enough to decide nearly every row of a generic cloud (else
    # the filter only adds a float32 search) and never decide a row float32 cannot rank: on the
    # shells (K-th neighbours 1e-9 apart, coordinates ~1000) every row near them must be deferred.
    seen = _count_undecided(monkeypatch)
    gen = torch.Generator().manual_seed(1)
    surface = torch.rand(1, 4000, 3, generator=gen, dtype=torch.float64)
    surface[..., 2] = 0.1 * torch.sin(6 * surface[..., 0]) * torch.cos(4 * surface[..., 1])
    surface, lengths = surface.to(device), torch.tensor([4000], device=device)
    _check(surface, lengths, 30, math.inf, 0, "surface")
    assert seen[-1] <= 40, f"{seen[-1]} of 4000 rows undecided on a generic surface"
    shells = _shells(60, gen, 1e-9, 1000.0)[None].to(device)
    lengths = torch.tensor([shells.shape[1]], device=device)
    _check(shells, lengths, 30, math.inf, 0, "shells")
    assert seen[-1] >= 60, f"only {seen[-1]} rows deferred: the shells' centres cannot be ranked in float32"
    far = (torch.rand(1, 3000, 3, generator=gen, dtype=torch.float64) * 1e20).to(device)  # squares overflow float32
    _check(far, torch.tensor([3000], device=device), 30, math.inf, 3, "far")
    assert seen[-1] == 3000


def test_float32_filter_takes_only_what_it_can():
    p = torch.rand(1, 100, 3, dtype=torch.float64)
    lengths = torch.tensor([100])
    for dtype, K, bound in ((torch.float32, 30, math.inf), (torch.float64, 32, math.inf), (torch.float64, 30, 0.1)):
        with pytest.raises(ValueError, match="list_mode 3"):
            _knn_self(p.to(dtype), lengths, K, bound, 3)
    with pytest.raises(ValueError, match="list_mode must be one of"):
        _knn_self(p, lengths, 30, math.inf, 4)


@pytest.mark.parametrize("device", DEVICES)
def test_normals_and_fpfh_take_the_self_search_where_the_tiles_pay(device, monkeypatch):
    # Where the sorted tiles serve (CUDA, or the emulator), estimate_normals and fpfh search
    # through _knn_self; their results are the general search's (the rows are the same). FPFH's
    # kernels read no distances and are not handed the search's (memory: 100k x 100 of them).
    from mentor3ad_ext.ops import normals as normals_op

    fpfh_op = importlib.import_module("mentor3ad_ext.ops.fpfh")  # the package exports the function

    calls, fpfh_dists = [], []
    real = normals_op._knn_self
    monkeypatch.setattr(normals_op, "_knn_self", lambda *a: calls.append(a[2]) or real(*a))
    real_fpfh = fpfh_op._fpfh
    monkeypatch.setattr(fpfh_op, "_fpfh", lambda *a: fpfh_dists.append(a[3].numel()) or real_fpfh(*a))
    monkeypatch.setattr(normals_op, "tiles_pay", lambda *size: True)  # at any size
    gen = torch.Generator().manual_seed(2)
    pts = torch.rand(1, 1500, 3, generator=gen, dtype=torch.float64).to(device)
    pts[..., 2] *= 0.05
    n = m.estimate_normals(pts, k=30)
    f = m.fpfh(pts, n, radius=0.12, max_nn=50)
    from mentor3ad_ext.ops._launch import host_kernels
    if host_kernels(pts):
        assert calls == []  # the CPU kernels search themselves
        return
    assert calls == [30, 50]
    assert fpfh_dists == [0]
    monkeypatch.setattr(normals_op, "tiles_pay", lambda *size: False)  # the general search
    assert torch.equal(m.estimate_normals(pts, k=30), n)
    assert torch.equal(m.fpfh(pts, n, radius=0.12, max_nn=50), f)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_morton_frame_is_the_valid_points_box(device, dtype):
    # One kernel (csrc/knn/tiles_plan.h) for what were eleven tensor ops of every CUDA search:
    # the valid points' lower corner, 1023 cells over the longest side; NaN coordinates left out;
    # ragged, single-point (zero extent), flat and empty clouds.
    from mentor3ad_ext.ops._spatial import morton_frame

    gen = torch.Generator().manual_seed(4)
    p = (torch.randn(5, 700, 3, generator=gen, dtype=torch.float64) * 7).to(dtype)
    p[2, :, 1] = 0.5
    p[0, 5, 2] = math.nan
    lengths = torch.tensor([700, 3, 700, 1, 0])
    lo, scale = morton_frame(p.to(device), lengths.to(device))
    big = torch.finfo(dtype).max
    for b in range(5):
        pts = p[b, :lengths[b]]
        want_lo = torch.cat([pts, torch.full((1, 3), big, dtype=dtype)]).nan_to_num(big).amin(0)
        want_hi = torch.cat([pts, torch.full((1, 3), -big, dtype=dtype)]).nan_to_num(-big).amax(0)
        extent = (want_hi - want_lo).amax().clamp_min(torch.finfo(dtype).tiny)
        assert torch.equal(lo[b].cpu(), want_lo), b
        assert torch.equal(scale[b].cpu(), torch.tensor(1023, dtype=dtype) / extent), b


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    # Schemas, fake tensors and dispatch of the two custom ops this plan added (torch.compile
    # replays them through their fakes).
    gen = torch.Generator().manual_seed(6)
    pts = torch.rand(2, 200, 3, generator=gen, dtype=torch.float64).to(device)
    lengths = torch.tensor([200, 150], device=device)
    torch.library.opcheck(torch.ops.mentor3ad.morton_frame, (pts, lengths))
    torch.library.opcheck(torch.ops.mentor3ad.knn_self, (pts, lengths, 30, math.inf, 3))
    torch.library.opcheck(torch.ops.mentor3ad.knn_self, (pts.float(), lengths, 40, 0.01, 0))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_knn_points_of_a_cloud_against_itself(device, dtype, monkeypatch):
    # knn_points(p, p) (one tensor, the same lengths or none) takes the self plan where the sorted
    # tiles serve, rows in the points' own order; float64 K = 17..31 through the float32 filter.
    # Same rows and gradients as the reference; a copy of p takes the general plan, same rows.
    from mentor3ad_ext.ops import knn as knn_op
    from mentor3ad_ext.ops._launch import host_kernels

    monkeypatch.setattr(knn_op, "tiles_pay", lambda *size: True)  # at any size
    calls = []
    real = knn_op.self_tiles_into
    monkeypatch.setattr(knn_op, "self_tiles_into", lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    gen = torch.Generator().manual_seed(7)
    points, lengths = _clouds(gen, dtype)
    points, lengths = points[[0, 1, 5, 6]].to(device), lengths[[0, 1, 5, 6]].to(device)
    for K, norm in ((1, 2), (20, 2), (30, 2), (30, 1), (40, 2)):
        got = m.knn_points(points, points, lengths, lengths, K=K, norm=norm)
        want = reference.knn_points(points, points, lengths, lengths, K=K, norm=norm)
        assert torch.equal(got.idx, want.idx) and torch.equal(got.dists, want.dists), (K, norm)
        copy = m.knn_points(points, points.clone(), lengths, lengths.clone(), K=K, norm=norm)
        assert torch.equal(copy.idx, got.idx) and torch.equal(copy.dists, got.dists), (K, norm)
    assert calls == ([] if host_kernels(points) else [1, 20, 30, 30, 40])
    unpadded = points[:1, :300].clone()
    assert torch.equal(m.knn_points(unpadded, unpadded, K=30).idx, reference.knn_points(unpadded, unpadded, K=30).idx)
    p = unpadded.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m.knn_points(p, p, K=20).dists.square().sum(), p)
    q = unpadded.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(reference.knn_points(q, q, K=20).dists.square().sum(), q)
    torch.testing.assert_close(grad, want)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_filter_reranks_rows_float32_gets_wrong(device, monkeypatch):
    # Shells whose radii differ by about float32's resolution at the cloud's offset: float32
    # alone orders the 30 nearest differently from float64 on some rows, yet the bound lets the
    # rerank decide nearly all of them, and its float64 ranking gives float64's rows (ranking
    # by the float32 distances fails here; the bound itself is tested by the shells above).
    seen = _count_undecided(monkeypatch)
    gen = torch.Generator().manual_seed(11)
    misranked = decided = total = 0
    for off, spacing, scale in ((1e3, 0.05, 3.0), (1e4, 0.3, 1.0), (10.0, 0.002, 10.0)):
        base = torch.randn(1500, 3, generator=gen, dtype=torch.float64) * spacing * 12
        jitter = off * 2.0**-24 * scale
        shell = torch.nn.functional.normalize(torch.randn(50, 30, 3, generator=gen, dtype=torch.float64), dim=-1)
        shell = shell * spacing * (1 + jitter / spacing * torch.rand(50, 30, 1, generator=gen, dtype=torch.float64))
        pts = (torch.cat([base, (base[:50, None] + shell).reshape(-1, 3)]) + off)[None]
        as32 = (pts - pts.amin(1, keepdim=True)).float()
        misranked += int((reference.knn_points(pts, pts, K=30).idx != reference.knn_points(as32, as32, K=30).idx)
                         .any(-1).sum())
        pts, lengths = pts.to(device), torch.tensor([pts.shape[1]], device=device)
        _check(pts, lengths, 30, math.inf, 0, f"offset {off}")
        decided += pts.shape[1] - seen[-1]
        total += pts.shape[1]
    assert misranked >= 20, f"only {misranked} rows misranked in float32: the test checks too little"
    assert decided >= 0.99 * total, f"{total - decided} of {total} rows undecided"
