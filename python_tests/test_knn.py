import contextlib
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mentor3ad_ext as m
from mentor3ad_ext import reference as R

from mentor3ad_ext.ops.knn import SELECT_ALWAYS, SELECT_NEVER, _knn_scan

from conftest import DEVICES, FLOAT_DTYPES, HAS_CUDA


def _check(p1, p2, l1=None, l2=None, K=1, **kw):
    got = m.knn_points(p1, p2, l1, l2, K=K, return_nn=True, **kw)
    cpu = lambda t: None if t is None else t.cpu()  # noqa: E731
    ref = R.knn_points(p1.cpu(), p2.cpu(), cpu(l1), cpu(l2), K=K, return_nn=True, **kw)
    assert torch.equal(got.idx.cpu(), ref.idx)
    assert torch.equal(got.dists.cpu(), ref.dists)
    assert torch.equal(got.knn.cpu(), ref.knn)
    return got


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("D", [1, 2, 3, 5, 8, 9])  # the CPU's tree up to D = 8, then the scan/filter
@pytest.mark.parametrize("K", [1, 4, 17, 40])
def test_matches_reference(device, dtype, D, K):
    p1 = torch.randn(2, 150, D, dtype=dtype, device=device)
    p2 = torch.randn(2, 900, D, dtype=dtype, device=device)
    _check(p1, p2, K=K)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("norm", [1, 2])
def test_ragged_empty_and_large_k(device, norm):
    p1 = torch.rand(4, 60, 3, device=device)
    p2 = torch.rand(4, 300, 3, device=device)
    l1 = torch.tensor([60, 0, 17, 60], device=device)
    l2 = torch.tensor([300, 300, 5, 0], device=device)
    got = _check(p1, p2, l1, l2, K=64, norm=norm)
    assert (got.idx[1] == -1).all() and (got.dists[1] == 0).all()  # no queries
    assert (got.idx[2, :17, 5:] == -1).all() and (got.idx[2, :17, :5] >= 0).all()  # K > cloud
    assert (got.idx[3] == -1).all()  # empty reference cloud
    assert (got.knn[2, :, 5:] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("D", [4, 6, 8])
def test_mid_dimensional_tree(device, dtype, norm, D):
    # The CPU kNN searches a KD-tree up to D = 8 (csrc/knn/knn_cpu.cpp): a lattice repeated twice
    # (ties everywhere, duplicates), a clustered cloud, ragged and empty clouds, K above the
    # cloud; coordinates whose distances overflow and NaN points (value checks off) as the
    # reference has them. Every row equals the reference, bit for bit.
    g = torch.Generator().manual_seed(14)
    lattice = torch.randint(0, 3, (700, D), generator=g).double()
    lattice = torch.cat([lattice, lattice])[torch.randperm(1400, generator=g)]
    blobs = torch.randn(6, D, generator=g, dtype=torch.float64)[torch.randint(0, 6, (1400,), generator=g)]
    blobs = blobs + 1e-3 * torch.randn(1400, D, generator=g, dtype=torch.float64)
    p2 = torch.stack([lattice, blobs, lattice]).to(device, dtype)
    p1 = torch.stack([lattice[:90] + 0.5, blobs[::15][:90], lattice[:90]]).to(device, dtype)
    l1, l2 = torch.tensor([90, 90, 0], device=device), torch.tensor([1400, 37, 1400], device=device)
    for K in (1, 9, 40):
        _check(p1, p2, l1, l2, K=K, norm=norm)
    big = 2e38 if dtype == torch.float32 else 1e308
    far = p2.clone()
    far[0, ::4] = big
    far[1, ::9, 0] = float("nan")
    with m.value_checks(False):
        _check(p1, far, l1, l2, K=12, norm=norm)


@pytest.mark.parametrize("device", DEVICES)
def test_ties_lower_index_first(device):
    # Integer grid duplicated: exact distance ties everywhere.
    g = torch.stack(torch.meshgrid(*[torch.arange(5.0)] * 3, indexing="ij"), -1).reshape(1, -1, 3)
    p2 = torch.cat([g, g, g], 1).to(device)
    p1 = (g[:, ::7] + 0.5).to(device)
    got = _check(p1, p2, K=30)
    d, i = got.dists[0], got.idx[0]
    same = d[:, 1:] == d[:, :-1]
    assert (i[:, 1:][same] > i[:, :-1][same]).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("norm", [1, 2])
def test_few_queries_over_large_ragged_clouds(device, dtype, norm):
    # CUDA serves few queries over clouds of >= 256 points one warp per query (K <= 32: strided
    # lanes, then a (distance, index) merge; larger K: 32-point chunks into a shared-memory list):
    # ragged clouds shorter than a warp's stride, empty ones,
    # exact ties between lanes (a lattice repeated 4x), signed zeros (L1 distances of -0.0: a -0
    # coordinate minus a +0 one).
    g = torch.stack(torch.meshgrid(*[torch.arange(6.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    lattice = torch.cat([g, g, g, g])[:800]
    zeros = torch.zeros(800, 3)
    zeros[::2] = -0.0
    p2 = torch.stack([lattice, torch.rand(800, 3), lattice, zeros]).to(device, dtype)
    p1 = torch.cat([lattice[:40] + 0.5, -torch.zeros(5, 3), torch.zeros(5, 3)])[None].expand(4, -1, -1).to(device, dtype)
    l1 = torch.tensor([50, 50, 0, 50], device=device)
    l2 = torch.tensor([800, 20, 800, 333], device=device)
    for K in (1, 5, 32, 33, 100):  # registers up to 32, the output arrays beyond
        got = _check(p1, p2, l1, l2, K=K, norm=norm)
        assert (got.idx[1, :, 20:] == -1).all() and (got.idx[2] == -1).all()
        if K > 32:  # these sizes take the block select by default; the warp lists must still agree
            d, i = _knn_scan(p1, p2, l1, l2, K, norm, SELECT_NEVER)
            assert torch.equal(i, got.idx) and torch.equal(d, got.dists)
            cd, _ = _cpu_knn(p1, p2, l1, l2, K, norm)
            assert torch.equal(_bits(d.cpu()), _bits(cd))  # -0 stays -0 (the warp lists' keys)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("norm", [1, 2])
def test_sorted_tiles_path_matches_reference(device, dtype, norm, monkeypatch):
    # CUDA kNN of 3-D clouds of >= TILES_MIN_POINTS points: both sides Morton-sorted, tiles skipped
    # by their boxes and visited out of index order (csrc/knn/knn_tiles.h). Exact only if the box
    # bound never exceeds a point's rounded distance and ties go by original index: lattices (many
    # equal distances, duplicates), tiny and wide coordinates, ragged, short and empty clouds,
    # queries outside the cloud's box and on its points. `_knn_tiles` runs the plan on any device
    # (the CPU twin on CPU); knn_points takes it on CUDA, here at any amount of work.
    from mentor3ad_ext.ops import knn as knn_op
    from mentor3ad_ext.ops.knn import TILES_MIN_POINTS, _knn_tiles

    monkeypatch.setattr(knn_op, "TILES_MIN_WORK", 0)
    monkeypatch.setattr(knn_op, "_block_select_pays", lambda *size: False)  # K > 32 would take it

    g = torch.Generator().manual_seed(3)
    ax = torch.arange(12.0)
    lattice = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    P2 = TILES_MIN_POINTS + 552
    lat = torch.cat([lattice, lattice])[torch.randperm(2 * len(lattice), generator=g)][:P2]
    p2 = torch.stack([lat, torch.rand(P2, 3, generator=g) * 1e-3, torch.randn(P2, 3, generator=g) * 1e3, lat])
    q = torch.cat([lat[:150] + 0.5, lat[150:250], torch.randn(100, 3, generator=g) * 30])
    p1 = torch.stack([q, q * 1e-4, q * 10, q])
    p1, p2 = p1.to(device, dtype), p2.to(device, dtype)
    l1 = torch.tensor([350, 300, 0, 350], device=device)
    l2 = torch.tensor([P2, P2 - 7, 33, 0], device=device)
    for K in (1, 4, 16, 30, 33, 100):  # registers up to 32, the output rows beyond
        got = _check(p1, p2, l1, l2, K=K, norm=norm)
        for mode in (0, 1, 2):  # by size (registers up to K = 32), thread per query, warp per query
            twin = _knn_tiles(p1, p2, l1, l2, K, norm, mode)
            assert torch.equal(twin[1], got.idx) and torch.equal(twin[0], got.dists), mode
        assert (got.idx[2] == -1).all() and (got.idx[3] == -1).all() and (got.idx[0, :, 1:] >= 0).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_results_do_not_depend_on_the_callers_denormal_mode(threads):
    # torch.set_flush_denormal(True) sets flush-to-zero / denormals-are-zero for the calling
    # thread only; squared distances below ~1e-38 (float32) then compared as 0 there and not on
    # the OpenMP workers: 7 of 8 kNN distances differed on this cloud. The kernels now always
    # compute in the IEEE mode (csrc/common/fp_mode.h).
    g = torch.Generator().manual_seed(0)
    p = (torch.rand(2, 600, 3, generator=g) * 3e-19).float()  # squared distances ~1e-39: denormals
    feats = torch.randn(2, 600, 4, generator=g)

    def run():
        n = m.estimate_normals(p, k=8)
        return [m.knn_points(p, p, K=8).dists, m.knn_points(p, p, K=8).idx, m.ball_query(p, p, K=8, radius=2e-19).idx,
                m.sample_farthest_points(p, K=32)[1], n, m.fpfh(p.double(), n.double(), max_nn=10),
                m.interpolate_features(p[:, :50], p, feats, k=3)]

    old = m.get_num_threads()
    m.set_num_threads(threads)
    # Comparisons too must run in the normal mode (under denormals-are-zero, torch compares a
    # denormal as 0), and the process may be in the other one already (torch.compile on torch 2.4).
    torch.set_flush_denormal(False)
    try:
        want = run()
        assert (want[0][..., 1:] > 0).float().mean() > 0.5 and (want[0][..., 1:] < 1e-37).all()
        if not torch.set_flush_denormal(True):
            pytest.skip("this CPU cannot flush denormals")
        try:
            got = run()
        finally:
            torch.set_flush_denormal(False)
    finally:
        m.set_num_threads(old)
    for i, (a, b) in enumerate(zip(got, want)):
        assert torch.equal(a, b), i


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_bound_zero_takes_nothing_with_denormals_flushed(dtype):
    # The CPU search turned "< bound" into "<= the float below it"; below 0 that is a denormal,
    # which a CPU in denormals-are-zero mode (torch.set_flush_denormal(True), also set by
    # torch.compile's CPU code on torch 2.4) compares as 0: distance 0 passed the bound 0 (1850
    # of 1850 rows kept the point itself). Grid (>= 512 queries) and tree searches.
    from mentor3ad_ext.ops.knn import _knn_within

    p = torch.rand(3, 700, 3, dtype=dtype)
    lengths = torch.tensor([700, 450, 700])
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        for n, K in ((700, 1), (700, 30), (100, 1), (100, 30)):
            d, i = _knn_within(p[:, :n], p[:, :n], lengths.clamp(max=n), lengths.clamp(max=n), K, 0.0)
            assert (i == -1).all() and (d == 0).all(), (n, K)
        d, i = _knn_within(p, p, lengths, lengths, 30, 0.01)
    finally:
        torch.set_flush_denormal(False)
    want_d, want_i = _knn_within(p, p, lengths, lengths, 30, 0.01)
    assert torch.equal(i, want_i) and torch.equal(d, want_d)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_bounded_tiles_search_is_the_prefix_below_the_bound(device, dtype, monkeypatch):
    # Normals and FPFH with a radius read each row's prefix at squared distance < radius^2; the
    # search stops there (ops.knn._knn_within: the CPU's grid and tree, CUDA's sorted tiles with
    # KnnTilesParams::max_dist). Every CUDA list (registers, a thread's output row, a warp's) and
    # the CPU search against the unbounded search cut after: bounds
    # equal to lattice distances (the comparison is strict), below and beyond every distance;
    # overflowed coordinates (infinite distances) never come in; ragged and empty clouds.
    from mentor3ad_ext.ops import knn as knn_op
    from mentor3ad_ext.ops.knn import _knn_tiles, _knn_within, _knn_within_idx

    monkeypatch.setattr(knn_op, "TILES_MIN_WORK", 0)
    monkeypatch.setattr(knn_op, "_block_select_pays", lambda *size: False)
    g = torch.Generator().manual_seed(5)
    ax = torch.arange(14.0)
    lattice = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3).double()  # 2744 points
    P2 = len(lattice)
    far = lattice[torch.randperm(P2, generator=g)]
    far[::97] = 1e20 if dtype == torch.float32 else 1e200  # squared distance overflows to +inf
    p2 = torch.stack([lattice[torch.randperm(P2, generator=g)], torch.rand(P2, 3, generator=g, dtype=torch.float64) * 14, far])
    # >= 512 queries: the CPU's bounded search takes its cell grid (a tree per query below that,
    # and for the overflowed cloud, which the grid cannot cover)
    q = torch.cat([lattice[:300] + 0.25, lattice[1000:1200], torch.rand(200, 3, generator=g, dtype=torch.float64) * 16 - 1])
    p1, p2 = q.expand(3, -1, -1).to(device, dtype), p2.to(device, dtype)
    l1 = torch.tensor([700, 450, 700], device=device)
    l2 = torch.tensor([P2, P2 - 40, P2], device=device)
    # The unbounded rows come from the thread lists (equal to the others,
    # test_sorted_tiles_path_matches_reference).
    for K in (1, 16, 33, 100):  # registers, then the two list kinds
        d_all, i_all = _knn_tiles(p1, p2, l1, l2, K, 2, 1)
        for bound in (0.0, 0.1875, 1.0, 2.0, 5.5, 1e30):
            inside = (d_all < torch.tensor(bound, dtype=dtype)) & (i_all >= 0)
            want_d, want_i = torch.where(inside, d_all, 0), torch.where(inside, i_all, -1)
            for mode in (0, 1, 2):
                d, i = _knn_tiles(p1, p2, l1, l2, K, 2, mode, bound)
                assert torch.equal(i, want_i) and torch.equal(d, want_d), (K, bound, mode)
            d, i = _knn_within(p1, p2, l1, l2, K, bound)
            assert torch.equal(i, want_i) and torch.equal(d, want_d), (K, bound)
            assert torch.equal(_knn_within_idx(p1, p2, l1, l2, K, bound), want_i), (K, bound)  # no dists written
        assert (want_i[:, 300:450, 0] >= 0).all()  # the queries on lattice points find themselves


@pytest.mark.parametrize("device", DEVICES)
def test_sorted_tiles_many_queries_large_k(device):
    # >= 65536 queries with K > 32 (FPFH's K = 100 search over every point of a cloud): a warp per
    # query, or one thread per query keeping its list in its output row (knn_tiles_memory, also the
    # path beyond K = 256); ragged clouds, a lattice for ties.
    from mentor3ad_ext.ops.knn import TILES_MIN_POINTS, _knn_tiles

    g = torch.Generator().manual_seed(11)
    B, P1, P2 = 32, 2048, TILES_MIN_POINTS + 100
    p2 = torch.rand(B, P2, 3, generator=g)
    p2[::4] = torch.randint(0, 14, (B // 4 + (B % 4 > 0), P2, 3), generator=g).float()
    p1 = torch.rand(B, P1, 3, generator=g) * 14
    l1 = torch.randint(P1 // 2, P1 + 1, (B,), generator=g)
    l2 = torch.randint(P2 - 50, P2 + 1, (B,), generator=g)
    got = m.knn_points(p1.to(device), p2.to(device), l1.to(device), l2.to(device), K=40)
    threads = _knn_tiles(p1.to(device), p2.to(device), l1.to(device), l2.to(device), 40, 2, 1)
    assert torch.equal(threads[1], got.idx) and torch.equal(threads[0], got.dists)
    for b in range(B):  # the reference per cloud keeps its distance matrix small
        want = R.knn_points(p1[b:b + 1], p2[b:b + 1], l1[b:b + 1], l2[b:b + 1], K=40)
        assert torch.equal(got.idx[b:b + 1].cpu(), want.idx) and torch.equal(got.dists[b:b + 1].cpu(), want.dists)


@pytest.mark.parametrize("device", DEVICES)
def test_wide_coordinates_and_noncontiguous(device):
    p2 = (torch.randn(1, 3, 2000, device=device) * 1e5).transpose(1, 2)
    p1 = (torch.randn(1, 3, 100, device=device) * 1e5).transpose(1, 2)
    assert not p1.is_contiguous()
    _check(p1, p2, K=8)
    _check(p1.expand(3, -1, -1), p2.expand(3, -1, -1), K=3)  # expanded (stride-0) batch


def test_half_and_mixed_dtypes():
    p1, p2 = torch.randn(1, 50, 3), torch.randn(1, 300, 3)
    got = m.knn_points(p1.half(), p2.half(), K=4)
    ref = R.knn_points(p1.half().float(), p2.half().float(), K=4)
    assert got.dists.dtype == torch.float32 and torch.equal(got.idx, ref.idx)
    got = m.knn_points(p1, p2.double(), K=4)
    assert got.dists.dtype == torch.float64


@pytest.mark.parametrize("norm", [1, 2])
def test_gradcheck(norm):
    p1 = torch.randn(2, 12, 3, dtype=torch.float64, requires_grad=True)
    p2 = torch.randn(2, 20, 3, dtype=torch.float64, requires_grad=True)
    l2 = torch.tensor([20, 3])
    fn = lambda a, b: m.knn_points(a, b, lengths2=l2, K=5, norm=norm).dists  # noqa: E731
    assert torch.autograd.gradcheck(fn, (p1, p2))


def test_gradients_match_reference_and_are_deterministic():
    p1 = torch.randn(2, 40, 3, dtype=torch.float64, requires_grad=True)
    p2 = torch.randn(2, 30, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 40, 6, dtype=torch.float64)
    (m.knn_points(p1, p2, K=6).dists * w).sum().backward()
    g1, g2 = p1.grad.clone(), p2.grad.clone()
    p1.grad = p2.grad = None
    (R.knn_points(p1, p2, K=6).dists * w).sum().backward()
    assert torch.allclose(g1, p1.grad) and torch.allclose(g2, p2.grad)
    p1.grad = p2.grad = None
    (m.knn_points(p1, p2, K=6).dists * w).sum().backward()
    assert torch.equal(g1, p1.grad) and torch.equal(g2, p2.grad)


def test_knn_gather_grad_and_lengths():
    x = torch.randn(2, 10, 4, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(-1, 10, (2, 7, 3))
    assert torch.autograd.gradcheck(lambda x: m.knn_gather(x, idx), (x,))
    lengths = torch.tensor([10, 2])
    out = m.knn_gather(x, idx, lengths)
    assert torch.equal(out, R.knn_gather(x.detach(), idx, lengths))
    assert (out[1, :, 2:] == 0).all()


@pytest.mark.parametrize("bad,exc,match", [
    (dict(p1=torch.randn(5, 3)), ValueError, r"p1 must be a 3-D tensor .*got shape \(5, 3\)"),
    (dict(p2=torch.randn(2, 9, 3)), ValueError, r"p1 \(1, 8, 3\) and p2 \(2, 9, 3\)"),
    (dict(p2=torch.randn(1, 9, 2)), ValueError, r"p1 \(1, 8, 3\) and p2 \(1, 9, 2\)"),
    (dict(p1=torch.ones(1, 8, 3, dtype=torch.bool)), TypeError, "p1 must have dtype"),
    (dict(p2=torch.ones(1, 8, 3, dtype=torch.int32)), TypeError, "p2 must have dtype"),
    (dict(K=0), ValueError, "K must be >= 1, got 0"),
    (dict(K=-3), ValueError, "K must be >= 1, got -3"),
    (dict(lengths2=torch.tensor([10])), ValueError, r"lengths2 must lie in \[0, 9\] .*got values in \[10, 10\]"),
    (dict(lengths1=torch.tensor([-1])), ValueError, r"lengths1 must lie in \[0, 8\]"),
    (dict(p1=torch.full((1, 8, 3), float("inf"))), ValueError, "p1 contains NaN or Inf"),
    (dict(p2=torch.full((1, 9, 3), float("nan"))), ValueError, "p2 contains NaN or Inf"),
    (dict(norm=3), ValueError, "norm must be 1 or 2, got 3"),
])
def test_bad_input(bad, exc, match):
    args = dict(p1=torch.randn(1, 8, 3), p2=torch.randn(1, 9, 3), K=2)
    args.update(bad)
    with pytest.raises(exc, match=match):
        m.knn_points(**args)


def test_knn_gather_bad_input():
    with pytest.raises(ValueError, match=r"idx must lie in \[-1, 9\].*got values in \[-1, 10\]"):
        m.knn_gather(torch.randn(1, 10, 2), torch.tensor([[[10, -1]]]))
    with pytest.raises(ValueError, match="same batch size"):
        m.knn_gather(torch.randn(2, 10, 2), torch.zeros(1, 3, 1, dtype=torch.int64))
    with pytest.raises(TypeError, match="idx must have dtype"):
        m.knn_gather(torch.randn(1, 10, 2), torch.zeros(1, 3, 1))


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_mixed_devices_rejected():
    with pytest.raises(ValueError, match="p2 is on cpu but p1 is on cuda"):
        m.knn_points(torch.randn(1, 4, 3, device="cuda"), torch.randn(1, 4, 3))


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("K", [1, 8, 32, 100])
def test_cpu_cuda_parity_no_sync(K):
    p1, p2 = torch.randn(2, 500, 3), torch.randn(2, 3000, 3)
    l2 = torch.tensor([3000, 50])
    cpu = m.knn_points(p1, p2, lengths2=l2, K=K)
    g1, g2, gl2 = p1.cuda(), p2.cuda(), l2.cuda()  # a host-to-device copy synchronises by itself
    with m.value_checks(False):
        torch.cuda.set_sync_debug_mode("error")
        try:
            gpu = m.knn_points(g1, g2, lengths2=gl2, K=K)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(cpu.idx, gpu.idx.cpu()) and torch.equal(cpu.dists, gpu.dists.cpu())


def test_opcheck():
    p1, p2 = torch.randn(2, 16, 3, requires_grad=True), torch.randn(2, 20, 3, requires_grad=True)
    l = torch.tensor([16, 5]), torch.tensor([20, 7])
    torch.library.opcheck(torch.ops.mentor3ad.knn, (p1, p2, l[0], l[1], 4, 2))
    torch.library.opcheck(torch.ops.mentor3ad.knn_within, (p1.detach(), p2.detach(), l[0], l[1], 4, 1.5))
    torch.library.opcheck(torch.ops.mentor3ad.knn_within_idx, (p1.detach(), p2.detach(), l[0], l[1], 4, 1.5))


def test_torch_compile():
    p1, p2 = torch.randn(2, 64, 3), torch.randn(2, 128, 3)
    f = torch.compile(lambda a, b: m.knn_points(a, b, K=5).dists.sum())
    assert torch.allclose(f(p1, p2), m.knn_points(p1, p2, K=5).dists.sum())


@settings(max_examples=30, deadline=None)
@given(B=st.integers(0, 3), P1=st.integers(0, 40), P2=st.integers(0, 60), K=st.integers(1, 70),
       D=st.integers(1, 10), seed=st.integers(0, 2**16))
def test_property(B, P1, P2, K, D, seed):
    g = torch.Generator().manual_seed(seed)
    p1 = torch.randint(-2, 3, (B, P1, D), generator=g).float()
    p2 = torch.randint(-2, 3, (B, P2, D), generator=g).float()
    l1 = torch.randint(0, P1 + 1, (B,), generator=g)
    l2 = torch.randint(0, P2 + 1, (B,), generator=g)
    got = _check(p1, p2, l1, l2, K=K)
    assert got.idx.shape == (B, P1, K)


@contextlib.contextmanager
def _dense_driver(driver, device="cpu"):
    """Runs the feature-space filter through `driver`: "host" (the CPU kernels' per-cloud driver)
    or "batched" (the synchronisation-free driver of CUDA and the emulator, here on whichever
    kernels the tensors take)."""
    from mentor3ad_ext.ops import _knn_dense

    host = device == "cpu" and m.ops._launch.host_kernels(torch.zeros(1))
    if driver == "host" and not host:
        pytest.skip("the host driver serves the CPU kernels only (under the emulator CPU tensors take CUDA's)")
    with mock.patch.object(_knn_dense, "host_kernels", lambda t: driver == "host"):
        yield


def _shrink_filter_blocks(monkeypatch, elems):
    from mentor3ad_ext.ops import _knn_dense

    for name in ("_CHUNK_ELEMS", "_CACHE_ELEMS", "_CUDA_CHUNK_ELEMS"):
        monkeypatch.setattr(_knn_dense, name, elems)


def _assert_scan_answer(got, p1, p2, l1, l2, K):
    d, i = _knn_scan(p1, p2, l1, l2, K, 2, SELECT_NEVER)
    assert torch.equal(got.idx, i) and torch.equal(_bits(got.dists), _bits(d)), K


def _row_smallest(a, m_):
    from mentor3ad_ext.ops._launch import C, dtype_tag, ptr

    vals, cols = a.new_empty((a.shape[0], m_)), torch.empty((a.shape[0], m_), dtype=torch.int64)
    C().row_smallest(ptr(a), a.shape[0], a.shape[1], m_, dtype_tag(a), ptr(vals), ptr(cols))
    return vals, cols


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", ["gauss", "lattice", "ascending", "descending", "special"])
def test_row_smallest_is_the_stable_sort_prefix(dtype, kind):
    # The feature-space filter's CPU candidate step (csrc/knn/row_smallest.h): per row the m
    # smallest values and their columns, exactly the first m of a stable sort (ties by the lower
    # column, NaN after +inf, -0 equal to +0): rows of every length around the 16-entry blocks,
    # m from 1 to n, ties (lattice), rows that never or always improve, NaN/inf/-0 rows.
    g = torch.Generator().manual_seed(12)
    for n, m_ in [(1, 1), (10, 10), (17, 1), (33, 17), (100, 5), (700, 300), (5000, 24), (4096, 64)]:
        a = torch.randn(6, n, generator=g, dtype=torch.float64)
        if kind == "lattice":
            a = torch.randint(0, 3, (6, n), generator=g).double()
        elif kind == "ascending":
            a = a.sort(dim=1).values
        elif kind == "descending":
            a = a.sort(dim=1, descending=True).values
        elif kind == "special":
            a[0] = float("nan")
            a[1, ::3] = float("nan")
            a[1, 1::7] = -float("nan")  # sign bit set: still after +inf
            a[2, ::2] = -0.0
            a[2, 1::2] = 0.0
            a[3, ::5] = float("inf")
            a[4, -1] = float("-inf")
            a[5, : n // 2] = float("nan")  # the first m are NaN: the bar starts as a NaN
        a = a.to(dtype).contiguous()
        vals, cols = _row_smallest(a, m_)
        want_v, want_c = torch.sort(a, dim=1, stable=True)
        assert torch.equal(cols, want_c[:, :m_]), (n, m_)
        assert torch.equal(_bits(vals), _bits(a.gather(1, cols)))  # the values themselves, -0 kept
        assert torch.equal(vals.nan_to_num(7.0), want_v[:, :m_].nan_to_num(7.0))
    with pytest.raises(ValueError, match="1 <= m <= n"):
        _row_smallest(torch.zeros(2, 5, dtype=dtype), 6)


@pytest.mark.parametrize("driver", ["host", "batched"])
@pytest.mark.parametrize("device", DEVICES)
def test_feature_space_knn_in_small_chunks(driver, device, monkeypatch):
    # The filter's blocks shrunk (ops/_knn_dense.py): products of 9 query rows per cloud (27 in
    # the host driver, which multiplies one cloud at a time), the batched driver's candidates
    # ranked 3 rows at a time, partial last blocks; some rows settle, some do not (shell points),
    # in ragged clouds. Same answer as the scan, bit for bit.
    from mentor3ad_ext.ops import _knn_dense

    _shrink_filter_blocks(monkeypatch, 25_000)
    g = torch.Generator().manual_seed(11)
    B, P1, P2, D = 3, 70, 900, _knn_dense.DENSE_MIN_D + 16
    p1, p2 = torch.randn(B, P1, D, generator=g), torch.randn(B, P2, D, generator=g)
    p2[1] = torch.nn.functional.normalize(p2[1], dim=1)
    p1[1, ::2] = 1e-6 * torch.randn(P1 // 2, D, generator=g)  # every other row: a shell around it
    p1, p2 = p1.to(device), p2.to(device)
    l1, l2 = torch.tensor([P1, 61, 40], device=device), torch.tensor([P2, 850, 700], device=device)
    with _dense_driver(driver, device):
        for K in (1, 7):
            _assert_scan_answer(m.knn_points(p1, p2, l1, l2, K=K), p1, p2, l1, l2, K)


@pytest.mark.parametrize("driver", ["host", "batched"])
@pytest.mark.parametrize("device", DEVICES)
def test_feature_space_rows_settle_at_different_prefixes(driver, device, monkeypatch):
    # Neighbouring query rows whose candidate lists settle at different lengths: even rows have
    # one clear nearest point (a few candidates settle them), odd rows sit at the centre of 8
    # points whose distances differ by less than the filter's error bound, the nearest being the
    # last of them by index (they need the longer list). Small blocks, so that ranking steps
    # cut across rows of both kinds. Same answer as the scan, bit for bit.
    from mentor3ad_ext.ops import _knn_dense

    _shrink_filter_blocks(monkeypatch, 20_000)
    g = torch.Generator().manual_seed(13)
    D, rows = _knn_dense.DENSE_MIN_D + 16, 24
    far = 100 + torch.randn(600, D, dtype=torch.float64, generator=g)
    centres = 10 * torch.randn(rows, D, dtype=torch.float64, generator=g)
    shells = []
    for r in range(1, rows, 2):  # 8 points around an odd row, radii shrinking with the index
        radii = 1 - 1e-13 * torch.arange(8, dtype=torch.float64)
        shells.append(centres[r] + radii[:, None] * torch.eye(D, dtype=torch.float64)[:8])
    singles = centres[0::2] + 0.3 * torch.randn(rows // 2, D, dtype=torch.float64, generator=g)
    p2 = torch.cat([far, singles, *shells])[None].to(device)
    p1 = centres[None].to(device)
    with _dense_driver(driver, device):
        got = m.knn_points(p1, p2, K=1)
    _assert_scan_answer(got, p1, p2, None, None, 1)
    odd = got.idx[0, 1::2, 0] - (600 + rows // 2)
    assert ((odd % 8) == 7).all()  # the last of each shell is the nearest


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), P1=st.integers(0, 30), P2=st.integers(0, 400), K=st.integers(1, 40),
       D=st.integers(9, 80), spread=st.sampled_from([0, 1e-4, 1.0]), seed=st.integers(0, 2**16))
def _property_feature_space(driver, B, P1, P2, K, D, spread, seed):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(B, 6, D, generator=g)
    p2 = centers[:, torch.randint(0, 6, (P2,), generator=g)] + spread * torch.randn(B, P2, D, generator=g)
    p1 = centers[:, torch.randint(0, 6, (P1,), generator=g)] + torch.randn(B, P1, D, generator=g)
    l1 = torch.randint(0, P1 + 1, (B,), generator=g)
    l2 = torch.randint(0, P2 + 1, (B,), generator=g)
    with _dense_driver(driver):
        got = m.knn_points(p1, p2, l1, l2, K=K)
    _assert_scan_answer(got, p1, p2, l1, l2, K)


@pytest.mark.parametrize("driver", ["host", "batched"])
def test_property_feature_space(driver):
    # The feature-space filter (D >= DENSE_MIN_D, ops/_knn_dense.py) against the index-order scan, bit for
    # bit, on random shapes, ragged batches and clustered points (spread 0: exact duplicates).
    with _dense_driver(driver):
        pass  # skips here, not inside hypothesis
    _property_feature_space(driver)


@pytest.mark.parametrize("device", DEVICES)
def test_k_not_capped(device):
    # torch_cluster caps k at 100; any K must work and stay exact.
    p1, p2 = torch.randn(1, 20, 3, device=device), torch.randn(1, 400, 3, device=device)
    got = _check(p1, p2, K=250)
    assert (got.idx >= 0).all()


# The CPU's many-query path (a cell grid that proposes candidates, knn/knn_grid.h) runs for 3-D
# clouds with at least 512 queries and 2048 points. These clouds are large enough to take it
# and built to reach its edge cases; the results must equal the brute-force reference bit for bit.
def _grid_case(name, dtype):
    g = torch.Generator().manual_seed(7)
    n = 2600
    if name == "uniform":
        p2 = torch.rand(1, n, 3, generator=g)
        p1 = p2
    elif name == "surface":
        xy = torch.rand(1, n, 2, generator=g)
        p2 = torch.cat([xy, 0.1 * torch.sin(6 * xy[..., :1]) * torch.cos(5 * xy[..., 1:])], -1)
        p1 = p2
    elif name == "lattice_ties":  # duplicated integer lattice: equal distances everywhere
        lat = torch.stack(torch.meshgrid(*[torch.arange(11.0)] * 3, indexing="ij"), -1).reshape(1, -1, 3)
        p2 = torch.cat([lat, lat], 1)
        p1 = torch.cat([lat, lat + 0.5], 1)
    elif name == "clusters_and_outliers":  # dense blobs 1e3 apart: coarse cells, tree fallbacks
        blobs = [torch.randn(1, n // 2, 3, generator=g) * 0.01 + c for c in (0.0, 1000.0)]
        far = torch.rand(1, 40, 3, generator=g) * 3000 - 1000
        p2 = torch.cat(blobs + [far], 1)
        p1 = p2[:, torch.randperm(p2.shape[1], generator=g)]
    elif name == "stacked_duplicates":  # 65 sites, 40 copies each: zero K-th distances, big buckets
        sites = torch.rand(1, 65, 3, generator=g)
        p2 = sites.repeat_interleave(40, 1)[:, torch.randperm(65 * 40, generator=g)]
        p1 = p2
    elif name == "queries_outside":  # queries beyond the cloud's box on every side
        p2 = torch.rand(1, n, 3, generator=g)
        p1 = torch.rand(1, n, 3, generator=g) * 1.6 - 0.3
    else:
        raise AssertionError(name)
    return p1.to(dtype), p2.to(dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name,K", [("uniform", 1), ("uniform", 30), ("uniform", 100), ("surface", 8),
                                    ("surface", 48), ("lattice_ties", 30), ("clusters_and_outliers", 30),
                                    ("queries_outside", 16), ("stacked_duplicates", 30),
                                    ("stacked_duplicates", 45)])
def test_many_query_grid_path_matches_reference(dtype, name, K):
    p1, p2 = _grid_case(name, dtype)
    _check(p1, p2, K=K)


@pytest.mark.parametrize("norm", [1, 2])
def test_many_query_grid_path_ragged_batch_and_norms(norm):
    g = torch.Generator().manual_seed(3)
    p2 = torch.rand(3, 3000, 3, generator=g)
    p1 = torch.rand(3, 2500, 3, generator=g)
    # cloud 0 takes the grid, cloud 1 has too few queries for it, cloud 2 too few points
    l1 = torch.tensor([2500, 100, 2500])
    l2 = torch.tensor([3000, 3000, 40])
    got = _check(p1, p2, l1, l2, K=50, norm=norm)
    assert (got.idx[1, 100:] == -1).all() and (got.idx[2, :, 40:] == -1).all()


def test_many_query_grid_path_nan_queries_with_checks_off_do_not_hang():
    # NaN distances never pass a distance filter; the selection must still terminate. Rows of
    # NaN queries get no neighbours, the other rows their exact answer.
    g = torch.Generator().manual_seed(5)
    p2 = torch.rand(1, 3000, 3, generator=g)
    p1 = torch.rand(1, 2000, 3, generator=g)
    p1[0, ::7] = float("nan")
    with m.value_checks(False):
        got = m.knn_points(p1, p2, K=16)
    ok = ~torch.isnan(p1[0, :, 0])
    ref = R.knn_points(p1[:, ok], p2, K=16)
    assert torch.equal(got.idx[:, ok], ref.idx) and torch.equal(got.dists[:, ok], ref.dists)
    assert (got.idx[0, ~ok] == -1).all()


# ---- CUDA block select (csrc/knn/knn_select_cuda.cu): one block per query, a radix select of the
# K-th (distance, index) key, then a sort of the K selected. Forced through `_knn_scan` here at any
# size (CUDA, or the CUDA emulator on CPU tensors; the CPU kernels ignore the mode). Its answer
# must equal the reference and, bit for bit, the CPU kernels: ties between lattice points and
# duplicates cut across the K-th slot (the select then splits index bits), distances of +-0 only,
# K above the cloud size, ragged and empty clouds, queries past lengths1, both norms and dtypes,
# D = 2, 3 (the unrolled kernel) and 5.
def _bits(t):
    return t.view(torch.int32 if t.dtype == torch.float32 else torch.int64)


def _cpu_knn(p1, p2, l1, l2, K, norm):
    """The CPU kernels' answer, also under the emulator (device -1 reaches them there)."""
    from mentor3ad_ext.ops._launch import C, dtype_tag, ptr

    p1, p2 = p1.cpu().contiguous(), p2.cpu().contiguous()
    l1, l2 = (None if t is None else t.cpu().contiguous() for t in (l1, l2))
    (B, P1, D), P2 = p1.shape, p2.shape[1]
    dists = torch.empty((B, P1, K), dtype=p1.dtype)
    idx = torch.empty((B, P1, K), dtype=torch.int64)
    C().knn(ptr(p1), ptr(p2), ptr(l1), ptr(l2), ptr(dists), ptr(idx), B, P1, P2, D, K, norm, SELECT_NEVER,
            dtype_tag(p1), -1, 0)
    return dists, idx


def _check_select(p1, p2, l1, l2, K, norm=2):
    d, i = _knn_scan(p1, p2, l1, l2, K, norm, SELECT_ALWAYS)
    cpu = lambda t: None if t is None else t.cpu()  # noqa: E731
    ref = R.knn_points(p1.cpu(), p2.cpu(), cpu(l1), cpu(l2), K=K, norm=norm)
    assert torch.equal(i.cpu(), ref.idx) and torch.equal(d.cpu(), ref.dists)
    cd, ci = _cpu_knn(p1, p2, l1, l2, K, norm)
    assert torch.equal(i.cpu(), ci) and torch.equal(_bits(d.cpu()), _bits(cd))  # -0 stays -0
    return d, i


def _select_clouds(D, dtype, device):
    g = torch.Generator().manual_seed(D)
    side = {2: 24, 3: 7, 5: 3}[D]
    ax = torch.arange(float(side))
    lattice = torch.stack(torch.meshgrid(*[ax] * D, indexing="ij"), -1).reshape(-1, D)
    P2 = 700
    lat = torch.cat([lattice, lattice, lattice])[torch.randperm(3 * len(lattice), generator=g)][:P2]
    zeros = torch.zeros(P2, D)
    zeros[::3] = -0.0
    p2 = torch.stack([lat, torch.rand(P2, D, generator=g), zeros, lat])
    q = torch.cat([lat[:3] + 0.5, lat[3:5], -torch.zeros(1, D), torch.rand(2, D, generator=g) * side])
    p1 = torch.stack([q, q, q, q])
    l1 = torch.tensor([8, 6, 8, 0])
    l2 = torch.tensor([P2, P2 - 5, 300, P2])
    return p1.to(device, dtype), p2.to(device, dtype), l1.to(device), l2.to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("D", [2, 3, 5])
def test_block_select_matches_reference_and_cpu(device, dtype, norm, D):
    p1, p2, l1, l2 = _select_clouds(D, dtype, device)
    for K in (33, 100, 128, 257, 1000):  # 1000 > every cloud: all points, sorted
        d, i = _check_select(p1, p2, l1, l2, K, norm)
        assert (i[:, 8:] == -1).all() and (i[1, 6:] == -1).all() and (i[3] == -1).all()  # no queries
        n = min(K, 300)
        assert (i[2, :8, :n] >= 0).all() and (i[2, :, n:] == -1).all() and (d[2, :, n:] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_block_select_ties_across_the_kth_slot(device):
    # 60 sites, 16 copies each: the K-th distance is shared by up to 16 points, so the select goes
    # on into the index bits; and one cloud of a single point repeated (every distance equal).
    g = torch.Generator().manual_seed(4)
    sites = torch.randint(0, 5, (60, 3), generator=g).float()
    p2 = torch.stack([sites.repeat(16, 1), torch.full((960, 3), 2.0)]).to(device)
    p1 = torch.randint(0, 5, (2, 6, 3), generator=g).float().to(device)
    for K in (33, 47, 100, 128, 500):
        d, i = _check_select(p1, p2, None, None, K)
        same = d[..., 1:] == d[..., :-1]
        assert (i[..., 1:][same] > i[..., :-1][same]).all()
    assert torch.equal(i[1], torch.arange(500).expand(6, -1).to(i.device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_block_select_by_default_noncontiguous_and_gradients(device, dtype):
    # knn_points picks the block select for these sizes on CUDA (few rows, K > 32, >= 256 points):
    # transposed and expanded inputs, and the distances' gradients (a separate autograd path).
    p2 = (torch.randn(1, 3, 500, dtype=dtype, device=device)).transpose(1, 2)
    p1 = (torch.randn(1, 3, 12, dtype=dtype, device=device)).transpose(1, 2)
    assert m.ops.knn._block_select_pays(1, 12, 500, 40) and not p1.is_contiguous()
    _check(p1, p2, K=40)
    _check(p1.expand(2, -1, -1), p2.expand(2, -1, -1), K=64, norm=1)
    a = p1.detach().clone().requires_grad_(True)
    b = p2.detach().clone().requires_grad_(True)
    w = torch.randn(1, 12, 40, dtype=dtype, device=device)
    got = m.knn_points(a, b, K=40).dists
    (got * w).sum().backward()
    ga, gb = a.grad.clone(), b.grad.clone()
    a.grad = b.grad = None
    ref = R.knn_points(a.cpu(), b.cpu(), K=40).dists
    assert torch.equal(got.detach().cpu(), ref.detach())
    (ref * w.cpu()).sum().backward()
    # the reference's gradients flow back through .cpu() into a.grad, b.grad on `device`
    assert torch.allclose(ga, a.grad) and torch.allclose(gb, b.grad)


@pytest.mark.parametrize("device", DEVICES)
def test_block_select_non_finite_distances_with_checks_off(device):
    # NaN coordinates (value checks off) are no candidates, as in the CPU kernels: NaN queries get
    # no neighbours, the others skip NaN points. Squared distances that overflow to inf (finite
    # inputs) are candidates, after the finite ones, as in the CPU kernels and the reference.
    g = torch.Generator().manual_seed(9)
    p2 = torch.rand(2, 400, 3, generator=g)
    p2[0, ::5] = float("nan")
    p2[1, ::3] = 3e19  # (3e19)^2 overflows float32
    p1 = torch.rand(2, 5, 3, generator=g)
    p1[0, 2] = float("nan")
    p1, p2 = p1.to(device), p2.to(device)
    for K in (40, 300, 400):  # 300 > the 266 finite distances in cloud 1, 400 > the 320 in cloud 0
        d, i = _knn_scan(p1, p2, None, None, K, 2, SELECT_ALWAYS)
        cd, ci = _cpu_knn(p1, p2, None, None, K, 2)
        assert torch.equal(i.cpu(), ci) and torch.equal(d.cpu(), cd)
        assert (i[0, 2] == -1).all() and (i[0, :, :40] % 5 != 0).all() and (i[1, :, :40] % 3 != 0).all()
        assert (i[0, :2, 320:] == -1).all() and (i[1, :, :266] % 3 != 0).all()
    assert torch.isinf(d[1, :, 266:400]).all() and (i[1, :, 266:400] % 3 == 0).all()


@pytest.mark.parametrize("driver", ["host", "batched"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("data", ["gauss", "lattice", "clusters", "shell"])
def test_feature_space_knn_equals_the_scan(driver, device, dtype, data, monkeypatch):
    # Squared L2, D >= DENSE_MIN_D: a matrix product proposes candidates and the kernel ranks
    # them (ops/_knn_dense.py); the answer must be the index-order scan's, bit for bit: lattice
    # ties, near-duplicate clusters, a shell of points almost equidistant from the queries (the
    # candidates do not settle: those rows take the scan), ragged and empty clouds, short clouds,
    # reduced-precision float32 matmuls, and coordinates whose products overflow (checks off).
    # Two drivers (_dense_driver): the CPU kernels' per-cloud one and the batched one of CUDA.
    from mentor3ad_ext.ops import knn as knn_op
    from mentor3ad_ext.ops._knn_dense import DENSE_MIN_D

    g = torch.Generator().manual_seed(4)
    B, P1, P2, D = 3, 70, 900, DENSE_MIN_D + 16
    if data == "gauss":
        p1, p2 = torch.randn(B, P1, D, generator=g), torch.randn(B, P2, D, generator=g)
    elif data == "lattice":
        p1, p2 = (torch.randint(0, 3, (B, n, D), generator=g).float() for n in (P1, P2))
    elif data == "clusters":
        base = torch.randn(B, 4, D, generator=g)
        p2 = base[:, torch.randint(0, 4, (P2,), generator=g)] + 1e-5 * torch.randn(B, P2, D, generator=g)
        p1 = base[:, torch.randint(0, 4, (P1,), generator=g)] + 1e-3 * torch.randn(B, P1, D, generator=g)
    else:
        p1 = torch.zeros(B, P1, D) + 1e-6 * torch.randn(B, P1, D, generator=g)
        p2 = torch.nn.functional.normalize(torch.randn(B, P2, D, generator=g), dim=2)
    p1, p2 = p1.to(device, dtype), p2.to(device, dtype)
    calls = []
    real = knn_op.knn_dense_into
    monkeypatch.setattr(knn_op, "knn_dense_into", lambda *a: calls.append(1) or real(*a))
    # cloud 2 is short: the host driver scans it, the batched one lists all its points
    l1, l2 = torch.tensor([P1, 0, 33], device=device), torch.tensor([P2, P2, 150], device=device)
    with _dense_driver(driver, device):
        for K in (1, 7, 40):
            _assert_scan_answer(m.knn_points(p1, p2, l1, l2, K=K), p1, p2, l1, l2, K)
        assert len(calls) == 3
        prec = torch.get_float32_matmul_precision()
        try:
            torch.set_float32_matmul_precision("medium")  # the filter then multiplies in float64
            got = m.knn_points(p1, p2, K=5)
            assert torch.equal(got.idx, _knn_scan(p1, p2, None, None, 5, 2, SELECT_NEVER)[1])
        finally:
            torch.set_float32_matmul_precision(prec)
        # the same through the backend's own setting (torch >= 2.9), where the legacy query raises
        backend = getattr(torch.backends.mkldnn if device == "cpu" else torch.backends.cuda, "matmul", None)
        if hasattr(backend, "fp32_precision"):  # (torch.backends.mkldnn.matmul is missing before 2.9)
            old = backend.fp32_precision
            try:
                backend.fp32_precision = "bf16" if device == "cpu" else "tf32"
                got = m.knn_points(p1, p2, K=5)
                assert torch.equal(got.idx, _knn_scan(p1, p2, None, None, 5, 2, SELECT_NEVER)[1])
            finally:
                backend.fp32_precision = old
        big = 1e20 if dtype == torch.float32 else 1e160  # |q|^2 overflows: those rows take the scan
        q = p1.clone()
        q[0, 3::9] *= big  # scattered rows: the batched driver moves them to the front and back
        q[2, 40] *= big
        with m.value_checks(False):
            got = m.knn_points(q, p2, K=3)
            want = _knn_scan(q, p2, None, None, 3, 2, SELECT_NEVER)
        assert torch.equal(got.idx, want[1]) and torch.equal(_bits(got.dists), _bits(want[0]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("norm", [1, 2])
def test_overflowed_distances_on_every_path(device, dtype, norm):
    # Finite coordinates whose distance overflows to +inf: such points are neighbours after every
    # finite one, by index, on every path (csrc/knn/knn_overflow.h), as in the CPU kernels and the
    # reference. Clouds where most points are that far, K above the finite count, far queries,
    # ragged rows; the thread-per-query scans (P2 < 256), the warp scans (P2 >= 256) and the sorted
    # tiles with each list keeper. NaN points (checks off) are no neighbours.
    from mentor3ad_ext.ops.knn import _knn_tiles

    big = 2e38 if dtype == torch.float32 else 1e308  # overflows norm 1 and 2 alike
    g = torch.Generator().manual_seed(5)
    for P2 in (200, 600):
        p2 = torch.rand(3, P2, 3, generator=g, dtype=torch.float64)
        p2[0, ::3] = big
        p2[1, 10:] = big  # 10 finite points
        p2[1, 25:40] = -big
        p2[2, 2:] = big
        p2[2, ::7, 1] = float("nan")
        p1 = torch.rand(3, 20, 3, generator=g, dtype=torch.float64)
        p1[0, 3] = big  # a far query: only the far points are at a finite distance
        p1[1, 4] = -big
        p1, p2 = p1.to(device, dtype), p2.to(device, dtype)
        l1 = torch.tensor([20, 17, 5], device=device)
        l2 = torch.tensor([P2, P2, P2 - 50], device=device)
        for K in (1, 4, 16, 32, 33, 150, 256):
            cd, ci = _cpu_knn(p1, p2, l1, l2, K, norm)
            if K > 10:  # cloud 1 has 10 finite points: the next neighbours are the first far ones
                far = torch.arange(10, min(K, 40))
                assert torch.isinf(cd[1, 0, 10:min(K, P2)]).all() and torch.equal(ci[1, 0, 10:len(far) + 10], far)
            assert (ci[1, 17:] == -1).all() and (ci[2, 5:] == -1).all()
            got = {"scan": _knn_scan(p1, p2, l1, l2, K, norm, SELECT_NEVER)}
            for mode in (0, 1, 2):
                if P2 >= 256:  # the sorted tiles serve 3-D clouds of thousands of points; any size works
                    got[f"tiles {mode}"] = _knn_tiles(p1, p2, l1, l2, K, norm, mode)
            for path, (d, i) in got.items():
                assert torch.equal(i.cpu(), ci) and torch.equal(d.cpu(), cd), (P2, K, path)
        ref = R.knn_points(p1[:2].cpu(), p2[:2].cpu(), l1[:2].cpu(), l2[:2].cpu(), K=150, norm=norm)  # no NaN
        cd, ci = _cpu_knn(p1[:2], p2[:2], l1[:2], l2[:2], 150, norm)
        assert torch.equal(ref.idx, ci) and torch.equal(ref.dists, cd)


def test_block_select_rule():
    # The C++ rule that both the CUDA dispatch and the adapter's tiles choice ask (knn_select.h).
    from mentor3ad_ext.ops.knn import _block_select_pays, tiles_pay

    assert _block_select_pays(1, 1024, 16_000, 128) and not tiles_pay(1, 1024, 16_000, 128)
    assert _block_select_pays(1, 4096, 100_000, 100) and not tiles_pay(1, 4096, 100_000, 100)
    assert _block_select_pays(1, 256, 16_000, 2048) and not _block_select_pays(1, 256, 16_000, 2049)
    assert not _block_select_pays(1, 1024, 16_000, 32)  # registers and warps serve K <= 32
    assert not _block_select_pays(1, 1024, 255, 100)  # tiny clouds: a thread per query
    assert not _block_select_pays(2, 8192, 1000, 100)  # many rows: the pruning paths
    assert not _block_select_pays(1, 8192, 100_000, 100) and tiles_pay(1, 8192, 100_000, 100)
    assert _block_select_pays(1, 8192, 100_000, 300)  # no list path takes K > 256 with few rows


def test_block_select_forced_beyond_its_k_raises():
    p1, p2 = torch.randn(1, 2, 3), torch.randn(1, 300, 3)
    if m.ops._launch.host_kernels(p1):
        pytest.skip("the CPU kernels have no block select (run under the CUDA emulator)")
    with pytest.raises(ValueError, match=r"block-select path takes K <= 2048.*K = 2049"):
        _knn_scan(p1, p2, None, None, 2049, 2, SELECT_ALWAYS)


def test_tiles_warp_lists_forced_beyond_their_k_raise():
    # The warp lists keep K <= 256 keys in shared memory (csrc/knn/warp_list.cuh); by size, larger K
    # goes to the thread lists, which take any K.
    from mentor3ad_ext.ops.knn import _knn_tiles

    p1, p2, l1, l2 = torch.randn(1, 2, 3), torch.randn(1, 300, 3), torch.tensor([2]), torch.tensor([300])
    if m.ops._launch.host_kernels(p1):
        pytest.skip("the CPU twin has one list kind (run under the CUDA emulator)")
    with pytest.raises(ValueError, match=r"warp lists take K <= 256 .*K = 257"):
        _knn_tiles(p1, p2, l1, l2, 257, 2, 2)
    d, i = _knn_tiles(p1, p2, l1, l2, 257, 2, 0)
    ref = R.knn_points(p1, p2, K=257)
    assert torch.equal(i, ref.idx) and torch.equal(d, ref.dists)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_warp_lists_sort_and_keep_under_ties(device, dtype):
    # The warp lists (32 < K <= 256) append candidates and, when their buffer is full, sort it and
    # keep K, whose K-th key becomes the bar (csrc/knn/warp_list.cuh). Duplicated points make whole
    # runs of candidates tie with the bar, and the tiles offer them out of index order: ties must
    # still go to the lower index across every refill, and the bar must never drop an earlier
    # kept key. Buffer sizes 128/256/512 against K = 33/100/256 (plus one chunk), bounded or not.
    from mentor3ad_ext.ops.knn import _knn_tiles

    g = torch.Generator().manual_seed(21)
    base = torch.rand(6, 3, generator=g, dtype=torch.float64)
    P2 = 3000
    p2 = base[torch.randint(0, 6, (P2,), generator=g)][None].to(device, dtype)
    p1 = torch.cat([base, base + 0.01, torch.rand(4, 3, generator=g, dtype=torch.float64)])[None].to(device, dtype)
    l1, l2 = torch.tensor([16], device=device), torch.tensor([P2 - 11], device=device)
    for K in (33, 100, 256):
        ref = R.knn_points(p1.cpu(), p2.cpu(), l1.cpu(), l2.cpu(), K=K)
        d, i = _knn_scan(p1, p2, l1, l2, K, 2, SELECT_NEVER)  # CUDA: the scan's warp per query
        assert torch.equal(i.cpu(), ref.idx) and torch.equal(d.cpu(), ref.dists), K
        for mode in (1, 2):
            d, i = _knn_tiles(p1, p2, l1, l2, K, 2, mode)
            assert torch.equal(i.cpu(), ref.idx) and torch.equal(d.cpu(), ref.dists), (K, mode)
        bound = float(ref.dists[0, :, K // 2].median())  # some rows end inside a run of ties
        inside = ref.dists < torch.tensor(bound, dtype=dtype)
        d, i = _knn_tiles(p1, p2, l1, l2, K, 2, 2, bound)
        assert torch.equal(i.cpu(), torch.where(inside, ref.idx, -1)), K
        assert torch.equal(d.cpu(), torch.where(inside, ref.dists, 0)), K
