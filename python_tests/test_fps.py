import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mentor3ad_ext as m
from mentor3ad_ext import reference as R

from conftest import DEVICES, FLOAT_DTYPES, HAS_CUDA


def _check(points, lengths=None, K=10, **kw):
    got_pts, got_idx = m.sample_farthest_points(points, lengths, K, **kw)
    ref_pts, ref_idx = R.sample_farthest_points(points.cpu(), None if lengths is None else lengths.cpu(), K, **kw)
    assert torch.equal(got_idx.cpu(), ref_idx)
    assert torch.equal(got_pts.cpu(), ref_pts)
    return got_pts, got_idx


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("P,K", [(1, 1), (7, 3), (7, 7), (200, 50), (3000, 200), (40_000, 20)])
def test_matches_reference(device, dtype, P, K):
    pts = torch.randn(2, P, 3, dtype=dtype, device=device)
    _check(pts, K=K)


@pytest.mark.parametrize("threads", [1, 2])
def test_large_single_cloud_any_thread_count(threads):
    # A large cloud builds its KD-tree on all threads: same order as one thread.
    pts = torch.rand(1, 300_000, 3)
    old = m.get_num_threads()
    m.set_num_threads(threads)
    try:
        _check(pts, K=64)
    finally:
        m.set_num_threads(old)


@pytest.mark.parametrize("threads", [2, 3])
def test_single_cloud_split_over_threads(threads):
    # Fewer clouds than threads: each cloud's points are dealt out to the threads, which swap
    # their farthest point after every sample. Exact ties across the subsets (a duplicated
    # grid, every point drawn, K == cloud size) must still go to the lower index; 3 threads on
    # this 2-core machine also checks that the spin exchange survives oversubscription.
    old = m.get_num_threads()
    m.set_num_threads(threads)
    try:
        g = torch.stack(torch.meshgrid(*[torch.arange(16.0)] * 3, indexing="ij"), -1).reshape(1, -1, 3)
        dup = torch.cat([g, g, g], 1)  # 12288 points, each three times
        _, idx = _check(dup, K=dup.shape[1], start_idx=7)
        assert len(set(idx[0].tolist())) == dup.shape[1]
        _check(torch.randn(1, 30_000, 3, dtype=torch.float64), K=500)
        # Two clouds on three threads: ragged, each on the whole team in turn.
        pts = torch.rand(2, 20_000, 3)
        _check(pts, torch.tensor([20_000, 13_001]), K=300, start_idx=torch.tensor([3, 13_000]))
    finally:
        m.set_num_threads(old)


def test_single_clouds_from_concurrent_python_threads():
    # Each call runs its own team of threads that wait for one another: calls from several
    # Python threads at once (more threads than cores) must neither deadlock nor mix results.
    import threading

    clouds = [torch.rand(1, 20_000, 3) for _ in range(4)]
    refs = [R.sample_farthest_points(c, K=200)[1] for c in clouds]
    got = [[] for _ in clouds]

    def work(i):
        for _ in range(3):
            got[i].append(m.sample_farthest_points(clouds[i], K=200)[1])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clouds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "FPS calls from concurrent threads hung"
    for g, r in zip(got, refs):
        assert len(g) == 3 and all(torch.equal(x, r) for x in g)


@pytest.mark.parametrize("device", DEVICES)
def test_ragged_empty_and_k_tensor(device):
    pts = torch.rand(4, 500, 3, device=device)
    lengths = torch.tensor([500, 130, 0, 3], device=device)
    _, idx = _check(pts, lengths, K=torch.tensor([40, 200, 5, 10], device=device))
    assert idx.shape == (4, 200)
    assert (idx[1, :130] >= 0).all() and (idx[1, 130:] == -1).all()
    assert (idx[2] == -1).all()
    assert sorted(idx[3, :3].tolist()) == [0, 1, 2] and (idx[3, 3:] == -1).all()


@pytest.mark.parametrize("device", DEVICES)
def test_large_ragged_clouds_with_ties_across_chunks(device):
    # Above 2^15 points CUDA splits each cloud over many blocks: clouds shorter than one block's
    # chunk, empty clouds, per-cloud K ending at different steps, a start index, and exact ties
    # (a lattice repeated 3x, so equal farthest distances sit in different chunks).
    g = torch.stack(torch.meshgrid(*[torch.arange(24.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    lattice = torch.cat([g, g, g])[:40_000]
    pts = torch.stack([lattice, torch.rand(40_000, 3) * 23, lattice.flip(0)]).to(device)
    lengths = torch.tensor([40_000, 3_000, 0], device=device)
    K = torch.tensor([25, 40, 5], device=device)
    _, idx = _check(pts, lengths, K=K, start_idx=torch.tensor([7, 2_999, 0], device=device))
    assert (idx[2] == -1).all() and (idx[0, 25:] == -1).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,P", [(torch.float32, 2049), (torch.float32, 4097), (torch.float32, 16384),
                                     (torch.float32, 19000), (torch.float32, 20000), (torch.float64, 8192),
                                     (torch.float64, 8193)])
def test_cloud_sizes_of_the_shared_memory_path(device, dtype, P):
    # CUDA keeps 3-D clouds of 2049 to ~19k float32 points (8192 float64) in shared memory, each
    # thread owning points t, t + 1024, ...: every points-per-thread variant, sizes just past the
    # float32 (227 KiB on an H100/H200) and float64 limits, exact ties between threads (a lattice
    # repeated), a cloud shorter than the batch's P, an empty one, per-cloud K and start indices,
    # and a cloud of duplicated points sampled whole (selected points are never picked again).
    g = torch.stack(torch.meshgrid(*[torch.arange(20.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    lattice = torch.cat([g] * (P // len(g) + 1))[:P]
    dup = torch.cat([g[:750], g[:750], lattice])[:P]  # 750 positions twice: K = 1500 takes all
    pts = torch.stack([lattice, torch.rand(P, 3) * 19, dup, lattice.flip(0)]).to(device, dtype)
    lengths = torch.tensor([P, P // 2, 1500, 0], device=device)
    K = torch.tensor([40, 33, 1500, 3], device=device)
    _, idx = _check(pts, lengths, K=K, start_idx=torch.tensor([P - 1, 5, 0, 0], device=device))
    assert len(set(idx[2].tolist())) == 1500 and (idx[3] == -1).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("D", [1, 2, 5])
def test_other_dims(device, D):
    _check(torch.randn(3, 300, D, device=device), K=30)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_feature_space_dims(device, dtype):
    # D >= 16 on the CPU: blocks of 8 points stored dimension-major, one clouds' blocks split over
    # the threads per iteration once n * D >= 2^18 (csrc/fps/fps_cpu.cpp, BlockedFps). Exact order:
    # duplicated points whose ties cross the blocks and the threads' chunks, padded last blocks,
    # ragged clouds, K equal to the cloud, a start point in the last block, one cloud alone (all
    # threads on it) and several (one thread each).
    g = torch.Generator().manual_seed(2)
    base = torch.randint(0, 3, (60, 16), generator=g).to(dtype)
    big = torch.cat([base[torch.randint(0, 60, (17_000,), generator=g)], torch.randn(3_003, 16, generator=g, dtype=dtype)])
    _check(big[None].to(device), K=300, start_idx=20_002)
    pts = torch.randn(3, 301, 40, generator=g, dtype=dtype)
    pts[1, 150:] = pts[1, :151].clone()  # every point twice
    lengths = torch.tensor([301, 301, 9], device=device)
    _check(pts.to(device), lengths, K=torch.tensor([301, 200, 9], device=device), start_idx=torch.tensor([300, 0, 8], device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_start_idx_and_random_start(device):
    pts = torch.randn(2, 400, 3, device=device)
    _, idx = _check(pts, K=12, start_idx=torch.tensor([5, 17], device=device))
    assert idx[:, 0].tolist() == [5, 17]
    _, idx = _check(pts, K=12, start_idx=9)
    assert idx[:, 0].tolist() == [9, 9]
    lengths = torch.tensor([400, 10], device=device)
    _, idx = m.sample_farthest_points(pts, lengths, K=5, random_start_point=True)
    assert 0 <= int(idx[1, 0]) < 10
    # The rest follows the textbook order from that start.
    _, ref = R.sample_farthest_points(pts.cpu(), lengths.cpu(), 5, start_idx=idx[:, 0].cpu())
    assert torch.equal(idx.cpu(), ref)


@pytest.mark.parametrize("device", DEVICES)
def test_ties_go_to_lower_index_and_duplicates_never_repeat(device):
    # A grid: many exact distance ties. Duplicated points: zero distances after selection.
    g = torch.stack(torch.meshgrid(*[torch.arange(6.0)] * 3, indexing="ij"), -1).reshape(1, -1, 3)
    pts = torch.cat([g, g], 1).to(device)
    _, idx = _check(pts, K=pts.shape[1])
    assert len(set(idx[0].tolist())) == pts.shape[1]  # K == cloud size: every index exactly once


@pytest.mark.parametrize("device", DEVICES)
def test_peer_bugs(device):
    # Points at the origin must be sampled (pointnet2_ops skipped them).
    pts = torch.zeros(1, 5, 3, device=device)
    pts[0, 1:, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    _, idx = _check(pts, K=5, start_idx=4)
    assert idx[0].tolist() == [4, 0, 2, 1, 3]
    # Wide clouds: the distance buffer must start at +inf, not a finite constant (torch_cluster).
    wide = torch.randn(1, 2000, 3, device=device) * 1e5
    _check(wide, K=100)
    # Tiny clouds (< 8 points) and K == cloud size without repeated index 0 (pytorch3d).
    for P in range(1, 9):
        _, idx = _check(torch.randn(1, P, 3, device=device), K=P)
        assert sorted(idx[0].tolist()) == list(range(P))


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_and_half(device):
    base = torch.randn(3, 3, 800, device=device)
    pts = base.transpose(1, 2)
    assert not pts.is_contiguous()
    _check(pts, K=25)
    half = torch.randn(2, 300, 3, device=device).half()
    _, idx = m.sample_farthest_points(half, K=20)
    _, ref = R.sample_farthest_points(half.float().cpu(), K=20)
    assert torch.equal(idx.cpu(), ref)


def test_gradient_flows_to_sampled_points():
    pts = torch.randn(2, 50, 3, dtype=torch.float64, requires_grad=True)
    out, idx = m.sample_farthest_points(pts, K=10)
    out.sum().backward()
    expect = torch.zeros_like(pts)
    for b in range(2):
        expect[b, idx[b]] = 1
    assert torch.equal(pts.grad, expect)


@pytest.mark.parametrize("bad,exc,match", [
    (dict(points=torch.randn(10, 3)), ValueError, r"points must be a 3-D tensor .*got shape \(10, 3\)"),
    (dict(points=torch.zeros(1, 10, 3, dtype=torch.int64)), TypeError, "points must have dtype"),
    (dict(points="x"), TypeError, "points must be a torch.Tensor"),
    (dict(K=0), ValueError, "K must be >= 1, got 0"),
    (dict(K=2.5), TypeError, "K must be an int"),
    (dict(lengths=torch.tensor([11])), ValueError, r"lengths must lie in \[0, 10\]"),
    (dict(lengths=torch.tensor([-1])), ValueError, r"lengths must lie in \[0, 10\]"),
    (dict(lengths=torch.tensor([3, 4])), ValueError, r"lengths must have shape \(1,\)"),
    (dict(lengths=torch.tensor([3.0])), TypeError, "lengths must be an integer tensor"),
    (dict(start_idx=10), ValueError, "start_idx must lie in"),
    (dict(K=torch.tensor([2, 3])), ValueError, r"K tensor must have shape \(1,\)"),
    # (no coordinates: the kernel read a null buffer and segfaulted)
    (dict(points=torch.zeros(1, 10, 0)), ValueError, r"points must have at least one coordinate \(D >= 1\), got shape \(1, 10, 0\)"),
])
def test_bad_input(bad, exc, match):
    args = dict(points=torch.randn(1, 10, 3), lengths=None, K=3)
    args.update(bad)
    with pytest.raises(exc, match=match):
        m.sample_farthest_points(**args)


def test_nan_rejected_and_value_checks_switch():
    pts = torch.randn(1, 10, 3)
    pts[0, 4, 1] = float("nan")
    with pytest.raises(ValueError, match=r"points contains NaN or Inf \(first at index \(0, 4, 1\)\)"):
        m.sample_farthest_points(pts, K=3)
    with m.value_checks(False):
        m.sample_farthest_points(torch.randn(1, 10, 3), torch.tensor([99]), K=3)  # clamped, no crash


def test_opcheck():
    pts = torch.randn(2, 64, 3)
    lengths = torch.tensor([64, 20])
    k = torch.tensor([8, 8])
    start = torch.zeros(2, dtype=torch.int64)
    torch.library.opcheck(torch.ops.mentor3ad.fps, (pts, lengths, k, start, 8))


def test_torch_compile():
    pts = torch.randn(2, 128, 3)
    f = torch.compile(lambda x: m.sample_farthest_points(x, K=16)[0].sum(), fullgraph=False)
    assert torch.allclose(f(pts), m.sample_farthest_points(pts, K=16)[0].sum())


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("P", [1000, 70_000])
def test_cpu_cuda_parity_and_no_sync(P):
    pts = torch.randn(3, P, 3)
    lengths = torch.tensor([P, P // 3, 1])
    cpu = m.sample_farthest_points(pts, lengths, K=64)[1]
    gpts, glengths = pts.cuda(), lengths.cuda()  # a host-to-device copy synchronises by itself
    with m.value_checks(False):
        torch.cuda.set_sync_debug_mode("error")
        try:
            gpu = m.sample_farthest_points(gpts, glengths, K=64)[1]
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(cpu, gpu.cpu())


@settings(max_examples=25, deadline=None)
@given(B=st.integers(0, 3), P=st.integers(0, 90), K=st.integers(1, 100), D=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_property_shapes(B, P, K, D, seed):
    g = torch.Generator().manual_seed(seed)
    pts = torch.randint(-3, 4, (B, P, D), generator=g).double()  # many ties
    lengths = torch.randint(0, P + 1, (B,), generator=g)
    got_pts, idx = _check(pts, lengths, K=K)
    assert idx.shape == (B, K) and got_pts.shape == (B, K, D)
    for b in range(B):
        n = min(K, int(lengths[b]))
        assert len(set(idx[b, :n].tolist())) == n and (idx[b, n:] == -1).all()
