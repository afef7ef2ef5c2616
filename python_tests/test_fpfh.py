import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mentor3ad_ext as m
from mentor3ad_ext import reference as R

from _surfaces import random_rotation, wavy_normals, wavy_surface
from conftest import DEVICES, FLOAT_DTYPES, HAS_CUDA

try:
    import open3d as o3d
except Exception:  # pragma: no cover - depends on the environment (libusb, glibc, ...)
    o3d = None


# Tests of the CPU kernels themselves (under the CUDA emulator CPU tensors take the CUDA route).
cpu_kernels = pytest.mark.skipif(not m.ops._launch.host_kernels(torch.zeros(1)),
                                 reason="tests the CPU kernels; CPU tensors take the CUDA route under the emulator")


def _cloud(n=150, seed=1, dtype=torch.float64):
    # Analytic normals: distinct at every point. (Normals from kNN PCA are bitwise equal at points
    # with the same neighbourhood; for such pairs open3d's choice of the source point, and with it
    # the sign of theta, is decided by rounding - see test_equal_normals_are_deterministic.)
    pts = wavy_surface(n, seed=seed, noise=0.01)
    return pts.to(dtype), wavy_normals(pts).to(dtype)


def _rows_close(a, b, atol):
    """Fraction of points whose 33 bins all agree within atol."""
    return ((a - b).abs() <= atol).all(-1).double().mean().item()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("radius", [None, 0.15])
def test_matches_reference(device, dtype, radius):
    (p0, n0), (p1, n1) = _cloud(120, 1, dtype), _cloud(120, 2, dtype)
    pts, nrm = torch.stack([p0, p1]), torch.stack([n0, n1])
    lengths = torch.tensor([120, 77])
    got = m.fpfh(pts.to(device), nrm.to(device), lengths.to(device), radius=radius, max_nn=16)
    ref = R.fpfh(pts, nrm, lengths, radius=radius, max_nn=16)
    assert got.shape == (2, 120, 33) and got.dtype == dtype
    torch.testing.assert_close(got.cpu(), ref, atol=1e-4 if dtype == torch.float32 else 1e-9, rtol=0)
    assert (got[1, 77:] == 0).all()
    # Every block sums to 200 (SPFH 100 + weighted 100), or 0 for a point without neighbours.
    blocks = got[0].reshape(-1, 3, 11).sum(-1).cpu().double()
    assert (((blocks - 200).abs() < 1e-3) | (blocks == 0)).all() and (blocks > 0).double().mean() > 0.9


@pytest.mark.parametrize("device", DEVICES)
def test_non_unit_normals_bin_like_the_reference(device):
    # Normals far from unit length put f1 and f2 far past [-1, 1]: their bins clamp to 0 or 10
    # as the reference's do. (The CPU used to convert the floor to int first, which x86 turns
    # into INT_MIN past int's range: bin 0 where the reference and CUDA give 10.)
    pts, nrm = _cloud(120, 3)
    got = m.fpfh(pts[None].to(device), (nrm * 1e12)[None].to(device), max_nn=16)
    ref = R.fpfh(pts[None], (nrm * 1e12)[None], max_nn=16)
    torch.testing.assert_close(got.cpu(), ref, atol=1e-9, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_radius_bounded_search_gives_the_same_bits(device, dtype, monkeypatch):
    # With a radius, CUDA stops the neighbour search at it (ops.knn._knn_within on the sorted
    # tiles) instead of finding all max_nn neighbours and reading the prefix inside the radius.
    # Forced onto the tiles at this size (where a GPU or the emulator runs them), FPFH and the
    # normals must equal, bit for bit, what the unbounded search gives: ragged clouds, balls
    # holding fewer and more than max_nn points.
    import importlib

    from mentor3ad_ext.ops import knn as knn_op
    fpfh_op = importlib.import_module("mentor3ad_ext.ops.fpfh")  # the package exports the function
    from mentor3ad_ext.ops import normals as normals_op

    monkeypatch.setattr(knn_op, "TILES_MIN_WORK", 0)
    monkeypatch.setattr(knn_op, "TILES_MIN_POINTS", 0)
    monkeypatch.setattr(knn_op, "_block_select_pays", lambda *size: False)
    pts = torch.stack([wavy_surface(3000, 3), wavy_surface(3000, 4)]).to(device, dtype)
    nrm = torch.stack([wavy_normals(pts[0].cpu().double()), wavy_normals(pts[1].cpu().double())]).to(device, dtype)
    lengths = torch.tensor([3000, 2100], device=device)
    bounded_f = m.fpfh(pts, nrm, lengths, radius=0.04, max_nn=40)
    bounded_n = m.estimate_normals(pts, lengths, k=40, radius=0.03)
    plain = normals_op.neighbourhoods

    def unbounded(points, lengths, K, radius2=-1.0, with_dists=True, index32=False, packed=False):
        idx, dists, order = plain(points, lengths, K)  # all K nearest, then the radius cut
        if radius2 < 0:
            return idx, dists, order
        inside = dists < torch.tensor(radius2, dtype=dists.dtype)
        return torch.where(inside, idx, -1), torch.where(inside, dists, 0), order

    monkeypatch.setattr(fpfh_op, "neighbourhoods", unbounded)
    monkeypatch.setattr(normals_op, "neighbourhoods", unbounded)
    assert torch.equal(m.fpfh(pts, nrm, lengths, radius=0.04, max_nn=40), bounded_f)
    assert torch.equal(m.estimate_normals(pts, lengths, k=40, radius=0.03), bounded_n)
    assert (bounded_f[0].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_alpha_bins_at_sector_edges(device):
    # The kernels bin alpha = atan2(y, x) by a pseudo-angle and call atan2 only within 1e-11 of a
    # sector edge (pair_features.h, alpha_bin); the reference always calls it. Pairs whose alpha
    # sits on each of the 10 inner edges -pi + 2 pi k / 11, a few ulps to 1e-6 off it, on both
    # sides: the bins must agree (a flip moves 200 between bins). Two-point clouds: the source is
    # n1 = z for both rows, d = (0.01, 0, 1), so v = -y, w = x and alpha is the angle of n2 in x-z.
    offsets = [0.0] + [sgn * e for e in (1e-16, 2e-16, 4e-16, 1e-15, 1e-13, 5e-12, 2e-11, 1e-9, 1e-6)
                       for sgn in (1, -1)]
    theta = torch.tensor([-np.pi + 2 * np.pi * k / 11 + o for k in range(1, 11) for o in offsets],
                         dtype=torch.float64)
    B = len(theta)
    pts = torch.zeros(B, 2, 3, dtype=torch.float64)
    pts[:, 1] = torch.tensor([0.01, 0.0, 1.0], dtype=torch.float64)
    nrm = torch.zeros(B, 2, 3, dtype=torch.float64)
    nrm[:, 0, 2] = 1.0
    nrm[:, 1, 0], nrm[:, 1, 2] = torch.sin(theta), torch.cos(theta)
    got = m.fpfh(pts.to(device), nrm.to(device), max_nn=2).cpu()
    ref = R.fpfh(pts, nrm, max_nn=2)
    if device == "cuda":
        # Within an ulp or two of an edge (offsets up to 4e-16; an ulp of pi is 4.4e-16) the
        # exact formula decides with CUDA's atan2, which may differ from glibc's in the last
        # ulp: the adjacent bin (on an H200, 2026-11-27: 2 of the 190 rows, at offsets -1e-16
        # and -2e-16). Everything farther must agree.
        off = torch.tensor(offsets * 10, dtype=torch.float64)
        differ = ((got - ref).abs() > 1e-9).any(-1).any(-1)
        assert (off[differ].abs() <= 4e-16).all(), off[differ]
        moved = got[differ, 0, :11].argmax(-1) - ref[differ, 0, :11].argmax(-1)
        assert (moved.abs() == 1).all(), moved
        got, ref = got[~differ], ref[~differ]
    torch.testing.assert_close(got, ref, atol=1e-9, rtol=0)
    alpha = got[:, 0, :11].argmax(-1)
    assert (got[:, 0, :11].max(-1).values == 200).all() and len(alpha.unique()) == 11  # both sides of every edge


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cpu_and_cuda_kernels_give_the_same_bits(dtype, monkeypatch):
    # The CPU pass computes a row's pairs in SIMD lanes (fpfh_cpu.cpp), CUDA one pair at a time,
    # with the same operations (pair_features.h): the same bits, bounded search or not. On a GPU;
    # under the CUDA emulator the CPU tensors reach the CUDA kernels, and the CPU kernels with
    # the emulation switched off.
    from mentor3ad_ext.ops import _launch

    if not HAS_CUDA and not _launch.EMULATED_CUDA:
        pytest.skip("needs a GPU or the CUDA emulator")
    pts, nrm = (t[None].clone() for t in _cloud(700, 9, dtype))
    pts[0, 10], nrm[0, 10] = pts[0, 11], nrm[0, 11]  # a coincident pair
    for kw in (dict(max_nn=30), dict(radius=0.12, max_nn=60)):
        if HAS_CUDA:
            cuda = m.fpfh(pts.cuda(), nrm.cuda(), **kw).cpu()
            cpu = m.fpfh(pts, nrm, **kw)
        else:
            cuda = m.fpfh(pts, nrm, **kw)
            monkeypatch.setattr(_launch, "EMULATED_CUDA", False)
            cpu = m.fpfh(pts, nrm, **kw)
            monkeypatch.setattr(_launch, "EMULATED_CUDA", True)
        assert torch.equal(cuda, cpu), kw


def _row_order_and_row_functions(pts, nrm, lengths, K, radius2=-1.0, index32=False):
    """The CPU FPFH passes twice over the same neighbourhoods: on row-order copies (the rows a
    permutation of each cloud's points, as always from our ops) and through the CUDA kernels'
    row functions (rows that are not: the last cloud's last padding row repeats the one before,
    so one padding point, no row's neighbour, has no row and its output is unwritten).
    index32: int32 lists from the indices-only search (FPFH's own), else int64 lists with
    distances. Returns the full output and both outputs on the points written by both."""
    from mentor3ad_ext.ops.fpfh import _fpfh, _fpfh_rows
    from mentor3ad_ext.ops.normals import neighbourhoods

    if index32 == "packed":  # FPFH's own CPU search: packed int32 rows
        order, rows = _packed_rows(pts, lengths, K, radius2)
        run = lambda query_index: _fpfh_rows(pts, nrm, *rows, query_index, K)  # noqa: E731
    else:
        idx, dists, order = neighbourhoods(pts, lengths, K, radius2, with_dists=not index32, index32=index32)
        assert idx.dtype == (torch.int32 if index32 else torch.int64)
        radius2 = radius2 if dists.numel() else -1.0  # an indices-only search ends its rows at the radius
        run = lambda query_index: _fpfh(pts, nrm, idx, dists, query_index, radius2)  # noqa: E731
    fast = run(order)
    assert lengths[-1] < pts.shape[1] - 1, "needs two padding points in the last cloud"
    dup = order.clone()
    dup[-1, -1] = dup[-1, -2]
    slow = run(dup)
    written = torch.ones(pts.shape[:2], dtype=torch.bool)
    written[-1, order[-1, -1]] = False
    return fast, fast[written], slow[written]


def _packed_rows(pts, lengths, K, radius2=-1.0):
    """FPFH's own CPU search: (query order, (idx, row_start, row_count)) of packed int32 rows."""
    from mentor3ad_ext.ops.normals import neighbourhoods

    rows, _, order = neighbourhoods(pts, lengths, K, radius2, with_dists=False, packed=True)
    assert isinstance(rows, tuple)
    return order, rows


def _check_packed_rows(pts, lengths, K, radius2, cut=True):
    from mentor3ad_ext.ops.normals import neighbourhoods

    B, P, _ = pts.shape
    order, (idx, row_start, row_count) = _packed_rows(pts, lengths, K, radius2)
    padded, _, order2 = neighbourhoods(pts, lengths, K, radius2, with_dists=False, index32=True)
    assert torch.equal(order, order2) and idx.shape == (B * P * K,)
    assert torch.equal(row_count, (padded >= 0).sum(-1, dtype=torch.int32))
    assert (row_count > 0).sum() == lengths.sum()
    if radius2 >= 0 and cut:
        assert (row_count[lengths > 0] < K).any() and (row_count == K).any()  # cut by the radius and by K
    used = torch.zeros(B * P * K, dtype=torch.int32)
    for b in range(B):
        for r in range(P):
            s, c = int(row_start[b, r]), int(row_count[b, r])
            assert torch.equal(idx[s:s + c], padded[b, r, :c]), (b, r)
            if c:
                assert b * P * K <= s and s + c <= (b + 1) * P * K, (b, r)
            used[s:s + c] += 1
    assert used.numel() == 0 or used.max() <= 1  # no two rows share an entry


@cpu_kernels
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("radius2", [-1.0, 0.004])
def test_packed_rows_are_the_padded_rows(radius2, threads):
    # FPFH's own CPU search packs its rows (KnnParams::row_start): each task of the search writes
    # its rows one after another from the slots of its first row, within its cloud's slots. The
    # rows must be the padded search's valid prefixes, and no two may overlap. A batch of a
    # cloud the grid serves, one the tree serves (too few points for a grid), a ragged one and
    # an empty one (searched a cloud per thread), then the first alone (its grid's cells split
    # over the threads).
    P, K = 3000, 40
    pts = torch.zeros((4, P, 3), dtype=torch.float64)
    lengths = torch.tensor([3000, 700, 2500, 0])
    for b, n in enumerate(lengths.tolist()[:3]):
        pts[b, :n] = wavy_surface(n, seed=10 + b, noise=0.01).double()
    pts[0, 7] = pts[0, 8]  # a duplicate point
    old = m.get_num_threads()
    m.set_num_threads(threads)
    try:
        _check_packed_rows(pts, lengths, K, radius2)
        _check_packed_rows(pts[:1], lengths[:1], K, radius2)
    finally:
        m.set_num_threads(old)


@cpu_kernels
@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(0, 2600), min_size=1, max_size=3), K=st.integers(1, 120),
       radius=st.one_of(st.none(), st.floats(0.005, 0.2)), lattice=st.booleans(), threads=st.integers(1, 2),
       seed=st.integers(0, 2**16))
def test_packed_rows_property(sizes, K, radius, lattice, threads, seed):
    # Random batches (the grid serves clouds of >= 2048 points, the tree the others), lattice
    # points full of ties and duplicates, any K and radius: the packed rows are the padded ones.
    g = torch.Generator().manual_seed(seed)
    P = max(sizes)
    pts = torch.zeros((len(sizes), P, 3), dtype=torch.float64)
    for b, n in enumerate(sizes):
        if lattice:
            pts[b, :n] = torch.randint(0, 12, (n, 3), generator=g).double() * 0.01
        else:
            pts[b, :n] = wavy_surface(n, seed=seed + b, noise=0.01).double() if n else pts[b, :0]
    old = m.get_num_threads()
    m.set_num_threads(threads)
    try:
        _check_packed_rows(pts, torch.tensor(sizes), K, -1.0 if radius is None else radius * radius, cut=False)
    finally:
        m.set_num_threads(old)


@cpu_kernels
@pytest.mark.parametrize("index32", [False, True, "packed"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cpu_row_order_pass_matches_the_row_functions(dtype, index32):
    # The same bits from both CPU routes (fpfh_cpu.cpp), over a ragged batch (offsets per cloud),
    # from int64 lists, the int32 lists of the indices-only search and FPFH's own packed rows.
    (p0, n0), (p1, n1) = _cloud(300, 3, dtype), _cloud(260, 4, dtype)
    pts = torch.zeros((2, 300, 3), dtype=dtype)
    nrm = torch.zeros_like(pts)
    pts[0], nrm[0], pts[1, :260], nrm[1, :260] = p0, n0, p1, n1
    lengths = torch.tensor([300, 260])
    full, fast, slow = _row_order_and_row_functions(pts, nrm, lengths, 40, index32=index32)
    assert torch.equal(fast, slow)
    assert torch.equal(full, m.fpfh(pts, nrm, lengths, max_nn=40))
    assert torch.equal(full[1, 260:], torch.zeros_like(full[1, 260:]))
    full, fast, slow = _row_order_and_row_functions(pts, nrm, lengths, 40, 0.015, index32=index32)
    assert torch.equal(fast, slow)
    assert torch.equal(full, m.fpfh(pts, nrm, lengths, radius=0.015 ** 0.5, max_nn=40))


@cpu_kernels
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cpu_simd_variants_give_the_same_bits(dtype, monkeypatch):
    # The CPU passes' two SIMD loops come in baseline, AVX2 and AVX-512 builds, picked at run
    # time (csrc/common/cpu_simd.h); MENTOR3AD_CPU_SIMD lowers the pick. Wider lanes, the same
    # operations: the same bits. (A CPU without AVX-512 runs its widest for "avx512".)
    pts, nrm = (t[None] for t in _cloud(500, 8, dtype))
    pts[0, 10], nrm[0, 10] = pts[0, 11], nrm[0, 11]  # a coincident pair
    got = {}
    for level in ("baseline", "avx2", "avx512"):
        monkeypatch.setenv("MENTOR3AD_CPU_SIMD", level)
        assert m.build_info()["cpu_simd"] in {"baseline": ("baseline",), "avx2": ("baseline", "avx2"),
                                              "avx512": ("baseline", "avx2", "avx512")}[level]
        got[level] = (m.fpfh(pts, nrm, max_nn=40), m.fpfh(pts, nrm, radius=0.12, max_nn=60))
    for level in ("avx2", "avx512"):
        assert all(torch.equal(a, b) for a, b in zip(got["baseline"], got[level])), level


def test_int32_lists_are_cpu_only(monkeypatch):
    # The CUDA kernels read int64 lists: an int32 one off the CPU kernels is refused before any
    # kernel runs (here: the CPU tensors routed as on CUDA, as under the emulator).
    from mentor3ad_ext.ops import _launch
    from mentor3ad_ext.ops.fpfh import _fpfh

    pts, nrm = (t[None] for t in _cloud(30))
    monkeypatch.setattr(_launch, "EMULATED_CUDA", True)
    with pytest.raises(ValueError, match="int32 neighbour lists are served by the CPU kernels only"):
        _fpfh(pts, nrm, torch.zeros((1, 30, 4), dtype=torch.int32), pts.new_empty(0), torch.arange(30)[None], -1.0)
    monkeypatch.setattr(_launch, "EMULATED_CUDA", False)
    with pytest.raises(ValueError, match=r"mentor3ad::knn_within_idx32: p1 must have shape \(B, P1, 3\), got \(1, 30, 2\)"):
        torch.ops.mentor3ad.knn_within_idx32(pts[..., :2], pts[..., :2], torch.tensor([30]), torch.tensor([30]), 4, 1.0)


@cpu_kernels
def test_packed_rows_out_of_range_are_refused():
    # fpfh_from_rows is reachable through torch.ops: rows outside the list, or longer than K, are
    # refused before any kernel reads them; so are tensors of the wrong shape or dtype.
    from mentor3ad_ext.ops.fpfh import _fpfh_rows

    pts, nrm = (t[None] for t in _cloud(30))
    lengths = torch.tensor([30])
    order, (idx, row_start, row_count) = _packed_rows(pts, lengths, 4)
    ok = _fpfh_rows(pts, nrm, idx, row_start, row_count, order, 4)
    assert torch.equal(ok, m.fpfh(pts, nrm, max_nn=4))
    torch.library.opcheck(torch.ops.mentor3ad.fpfh_from_rows, (pts, nrm, idx, row_start, row_count, order, 4))
    for start, count, what in ((117, 4, "start 117, count 4"), (-1, 2, "start -1, count 2"), (0, 5, "start 0, count 5"),
                               (0, -1, "start 0, count -1")):
        s, c = row_start.clone(), row_count.clone()
        s[0, 3], c[0, 3] = start, count
        with pytest.raises(ValueError, match=rf"packed row 3 \({what}\) is not within the 120-entry list of rows of at most 4"):
            _fpfh_rows(pts, nrm, idx, s, c, order, 4)
    with pytest.raises(TypeError, match=r"mentor3ad::fpfh_from_rows: row_count must have dtype in \(int32\), got int64"):
        _fpfh_rows(pts, nrm, idx, row_start, row_count.long(), order, 4)
    with pytest.raises(ValueError, match=r"fpfh_from_rows: idx must have shape \(120,\), got \(100,\)"):
        _fpfh_rows(pts, nrm, idx[:100], row_start, row_count, order, 4)
    with pytest.raises(ValueError, match=r"normals must have shape \(B, P, 3\), got \(1, 29, 3\); P = 30 from points"):
        _fpfh_rows(pts, nrm[:, :29], idx, row_start, row_count, order, 4)
    with pytest.raises(ValueError, match=r"query_index must have shape \(B, P\), got \(1, 31\); P = 30 from points"):
        _fpfh_rows(pts, nrm, idx, row_start, row_count, torch.arange(31)[None], 4)
    with pytest.raises(ValueError, match=r"fpfh_from_neighbors: idx must have shape \(B, P, K\), got \(1, 29, 4\); "
                                         r"P = 30 from points"):
        torch.ops.mentor3ad.fpfh_from_neighbors(pts, nrm, torch.zeros((1, 29, 4), dtype=torch.int64), pts.new_empty(0),
                                                order, -1.0)
    with pytest.raises(ValueError, match=r"knn_within_rows32: p1 must have shape \(B, P1, 3\), got \(1, 30, 2\)"):
        torch.ops.mentor3ad.knn_within_rows32(pts[..., :2], pts[..., :2], lengths, lengths, 4, 1.0)
    with pytest.raises(TypeError, match=r"knn_within_rows32: p2 must have dtype in \(float64\), got float32"):
        torch.ops.mentor3ad.knn_within_rows32(pts, pts.float(), lengths, lengths, 4, 1.0)
    with pytest.raises(ValueError, match=r"knn_within_idx32: lengths2 must have shape \(B,\), got \(2,\); B = 1 from p1"):
        torch.ops.mentor3ad.knn_within_idx32(pts, pts, lengths, torch.tensor([30, 30]), 4, 1.0)
    huge = pts[:, :1].expand(1, 2**31, 3)  # (no memory: an expanded view)
    for op in ("knn_within_rows32", "knn_within_idx32"):
        with pytest.raises(ValueError, match=rf"{op}: int32 lists hold at most 2147483647 points and neighbours, "
                                             r"got p2 \(1, 2147483648, 3\), K 4"):
            getattr(torch.ops.mentor3ad, op)(pts, huge, lengths, lengths, 4, 1.0)


@cpu_kernels
def test_fpfh_past_the_tabled_neighbour_count():
    # Up to 256 neighbours per row the row-order pass reads each bin's sum from a table made once
    # per call; rows with more make their own when their count changes (fpfh_cpu.cpp). Against
    # the row functions, which add pair by pair: rows of 162-399 neighbours within a radius.
    pts, nrm = (t[None] for t in _cloud(402, 6))
    lengths = torch.tensor([400])
    counts = (torch.cdist(pts[0, :400], pts[0, :400]) ** 2 < 0.5).sum(1)
    assert counts.min() < 256 < counts.max()
    _, fast, slow = _row_order_and_row_functions(pts, nrm, lengths, 400, 0.5, index32=True)
    assert torch.equal(fast, slow)


@pytest.mark.parametrize("device", DEVICES)
def test_rotation_and_translation_invariance(device):
    pts, nrm = _cloud(400, 5)
    rot = random_rotation(7)
    shift = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64)
    a = m.fpfh(pts[None].to(device), nrm[None].to(device), max_nn=30)[0].cpu()
    b = m.fpfh((pts @ rot.T + shift)[None].to(device), (nrm @ rot.T)[None].to(device), max_nn=30)[0].cpu()
    # Exact up to rounding, except for the rare pair whose angle lies within rounding of a bin edge.
    assert _rows_close(a, b, 1e-8) > 0.98
    assert (a - b).abs().sum(-1).mean() < 1.0
    assert (a.reshape(-1, 3, 11).argmax(-1) == b.reshape(-1, 3, 11).argmax(-1)).double().mean() > 0.99


@pytest.mark.parametrize("device", DEVICES)
def test_degenerate_inputs_never_nan(device):
    single = m.fpfh(torch.zeros(1, 1, 3, device=device), torch.zeros(1, 1, 3, device=device))
    assert (single == 0).all()
    # Two coincident points: their pair has d = 0 -> (0, 0, 0) features -> the middle bins; the
    # weighted part skips zero distances, so the result is the point's own SPFH.
    dup = m.fpfh(torch.ones(1, 2, 3, dtype=torch.float64, device=device),
                 torch.tensor([[[0.0, 0.0, 1.0]] * 2], dtype=torch.float64, device=device))
    expect = torch.zeros(33, dtype=torch.float64)
    expect[[5, 16, 27]] = 100.0
    torch.testing.assert_close(dup[0].cpu(), expect.expand(2, 33))
    # Zero normals (what estimate_normals gives degenerate neighbourhoods) and lengths 0.
    pts, _ = _cloud(50)
    out = m.fpfh(pts[None].to(device), torch.zeros(1, 50, 3, dtype=torch.float64, device=device), max_nn=8)
    mid = out.reshape(50, 3, 11)[:, :, 5]
    assert torch.isfinite(out).all() and torch.allclose(mid, torch.full_like(mid, 200.0)) and (out.sum(-1) - mid.sum(-1)).abs().max() < 1e-9
    out = m.fpfh(torch.stack([pts, pts]).to(device), torch.zeros(2, 50, 3, dtype=torch.float64, device=device),
                 torch.tensor([0, 1], device=device))
    assert (out == 0).all()
    assert m.fpfh(torch.zeros(3, 0, 3, device=device), torch.zeros(3, 0, 3, device=device)).shape == (3, 0, 33)


@pytest.mark.parametrize("device", DEVICES)
def test_neighbour_counts_past_the_cloud_are_the_whole_cloud(device):
    # The searches' lists are (B, P, max_nn): max_nn = 2**31 on 40 points asked the allocator
    # for ~500 GB. Past the cloud size the neighbours are all points, so the counts are capped.
    pts, nrm = (t[None].to(device) for t in _cloud(40, 3))
    lengths = torch.tensor([33], device=device)
    for radius in (None, 0.3):
        want = m.fpfh(pts, nrm, lengths, radius=radius, max_nn=40)
        assert torch.equal(m.fpfh(pts, nrm, lengths, radius=radius, max_nn=2**31), want)
        assert torch.equal(m.fpfh(pts, nrm, lengths, radius=radius, max_nn=41), want)
    assert torch.equal(m.estimate_normals(pts, lengths, k=2**31), m.estimate_normals(pts, lengths, k=40))
    xyz = pts.reshape(1, 5, 8, 3)
    assert torch.equal(m.fpfh_organized(xyz, max_nn=2**40, normals_k=2**31),
                       m.fpfh_organized(xyz, max_nn=40, normals_k=40))
    assert torch.equal(m.estimate_normals_organized(xyz, k=2**31), m.estimate_normals_organized(xyz, k=40))


def test_equal_normals_are_deterministic():
    # kNN normals: neighbouring points often share a neighbourhood and so a bitwise-equal normal;
    # the result then depends on rounding (as in open3d) but is reproducible run to run.
    pts = wavy_surface(300, seed=9, noise=0.01)[None]
    nrm = m.estimate_normals(pts, k=10)
    assert (nrm[0, :, None, :] == nrm[0, None, :, :]).all(-1).sum() > 300  # equal pairs exist
    a = m.fpfh(pts, nrm, max_nn=20)
    assert torch.equal(a, m.fpfh(pts, nrm, max_nn=20))
    torch.testing.assert_close(a, R.fpfh(pts, nrm, max_nn=20), atol=1e-9, rtol=0)


def test_half_mixed_and_no_grad():
    pts, nrm = _cloud(100)
    ref = m.fpfh(pts[None].float(), nrm[None].float(), max_nn=10)
    got = m.fpfh(pts[None].half(), nrm[None].half(), max_nn=10)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    mixed = m.fpfh(pts[None].float(), nrm[None], max_nn=10)
    assert mixed.dtype == torch.float64
    assert _rows_close(mixed.float(), ref, 1e-3) > 0.95
    out = m.fpfh(pts[None].requires_grad_(True), nrm[None], max_nn=10)
    assert not out.requires_grad


@pytest.mark.parametrize("device", DEVICES)
def test_organized_matches_unorganized(device):
    H, W = 20, 26
    yy, xx = torch.meshgrid(torch.linspace(-0.1, 0.1, H), torch.linspace(-0.12, 0.12, W), indexing="ij")
    zz = 0.4 + 0.02 * torch.sin(20 * xx) * torch.cos(15 * yy)
    xyz = torch.stack([xx, yy, zz], -1).double()[None].repeat(2, 1, 1, 1)
    valid = torch.rand(2, H, W) > 0.25
    xyz[~valid] = 0.0
    d = device
    # Without an FPFH radius and with normals_k <= max_nn one search serves both (the normals'
    # lists are the prefix of FPFH's): the same bits as the two searches of the unorganized ops.
    for kw in (dict(max_nn=8), dict(radius=0.03), dict(normals_radius=0.02), {}):
        kw = {"max_nn": 20, "radius": None, "normals_radius": None, **kw}
        got = m.fpfh_organized(xyz.to(d), normals_k=10, **kw)
        assert got.shape == (2, H, W, 33) and (got[~valid.to(d)] == 0).all()
        for b in range(2):
            pts = xyz[b][valid[b]][None].to(d)
            ref = m.fpfh(pts, m.estimate_normals(pts, k=10, radius=kw["normals_radius"]), max_nn=kw["max_nn"],
                         radius=kw["radius"])[0]
            assert torch.equal(got[b][valid[b].to(d)], ref), kw
    normals = m.estimate_normals_organized(xyz.to(d), k=10)
    given = m.fpfh_organized(xyz.to(d), normals, valid.to(d), max_nn=20)
    torch.testing.assert_close(given, got)


@pytest.mark.skipif(o3d is None, reason="open3d not importable")
@pytest.mark.parametrize("case", ["random_knn", "random_hybrid", "grid_hybrid"])
def test_matches_open3d(case):
    if case == "grid_hybrid":
        # A regular grid with a bump: many equal distances. The radius keeps every neighbourhood
        # under max_nn, so the neighbour sets are unambiguous (ties only change the sum order).
        g = torch.stack(torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij"), -1).reshape(-1, 2) / 40
        z = 0.1 * torch.exp(-((g - 0.5) ** 2).sum(-1) / 0.02)
        pts = torch.cat([g, z[:, None]], 1).double()
        radius, max_nn = 0.09, 100
    else:
        pts = wavy_surface(2000, seed=4, noise=0.01)
        radius, max_nn = (None, 40) if case == "random_knn" else (0.06, 100)
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.numpy()))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(20))
    pc.orient_normals_towards_camera_location(np.zeros(3))
    param = (o3d.geometry.KDTreeSearchParamKNN(max_nn) if radius is None
             else o3d.geometry.KDTreeSearchParamHybrid(radius, max_nn))
    ref = torch.from_numpy(np.asarray(o3d.pipelines.registration.compute_fpfh_feature(pc, param).data).T.copy())
    normals = torch.from_numpy(np.asarray(pc.normals).copy())
    got = m.fpfh(pts[None], normals[None], radius=radius, max_nn=max_nn)[0]
    assert _rows_close(got, ref, 1e-9 * 200) > 0.995
    assert (got - ref).abs().max() < 100  # a bin-edge flip moves at most one pair's share


@pytest.mark.parametrize("call, exc, match", [
    (lambda: m.fpfh(torch.rand(1, 5, 3), torch.rand(1, 6, 3)), ValueError, r"normals must have the shape of points \(1, 5, 3\), got \(1, 6, 3\)"),
    (lambda: m.fpfh(torch.rand(5, 3), torch.rand(5, 3)), ValueError, "points must be a 3-D tensor"),
    (lambda: m.fpfh(torch.rand(1, 5, 3), torch.rand(1, 5, 3).int()), TypeError, "normals must have dtype"),
    (lambda: m.fpfh(torch.rand(1, 5, 3), torch.rand(1, 5, 3), max_nn=0), ValueError, "max_nn must be >= 1, got 0"),
    (lambda: m.fpfh(torch.rand(1, 5, 3), torch.rand(1, 5, 3), radius=0.0), ValueError, "radius must be a finite number > 0"),
    (lambda: m.fpfh(torch.rand(1, 5, 3), torch.full((1, 5, 3), float("inf"))), ValueError, "normals contains NaN or Inf"),
    (lambda: m.fpfh(torch.rand(1, 5, 3), torch.rand(1, 5, 3), torch.tensor([6])), ValueError, r"lengths must lie in \[0, 5\]"),
    (lambda: m.fpfh_organized(torch.rand(1, 4, 4, 3), torch.rand(1, 4, 4, 2)), ValueError, "normals must have the shape of xyz"),
    (lambda: m.fpfh_organized(torch.rand(2, 4, 4)), ValueError, r"xyz must be a 4-D tensor \(B, H, W, 3\), got shape \(2, 4, 4\)"),
    (lambda: m.fpfh_organized(torch.rand(1, 4, 4, 3), normals_k=0), ValueError, "normals_k must be >= 1"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_opcheck():
    from mentor3ad_ext.ops._spatial import morton_frame
    from mentor3ad_ext.ops.normals import neighbourhoods
    pts, nrm = _cloud(64)
    lengths = torch.tensor([60])
    idx, dists, order = neighbourhoods(pts[None], lengths, 8)
    torch.library.opcheck(torch.ops.mentor3ad.fpfh_from_neighbors, (pts[None], nrm[None], idx, dists, order, 0.04))
    lo, scale = morton_frame(pts[None], lengths)  # the query order's codes, a custom op too
    torch.library.opcheck(torch.ops.mentor3ad.morton_codes, (pts[None], lengths, lo, scale))
    torch.library.opcheck(torch.ops.mentor3ad.morton_order, (pts[None], lengths))  # the CPU's order
    if not m.ops._launch.host_kernels(pts):
        return
    # FPFH's CPU search: int32 indices, the rows of the int64 op
    q = pts[None].gather(1, order[..., None].expand(-1, -1, 3))
    args = (q, pts[None], lengths, lengths, 8, 0.01)
    torch.library.opcheck(torch.ops.mentor3ad.knn_within_idx32, args)
    assert torch.equal(torch.ops.mentor3ad.knn_within_idx32(*args).long(), torch.ops.mentor3ad.knn_within_idx(*args))
    torch.library.opcheck(torch.ops.mentor3ad.fpfh_from_neighbors,
                          (pts[None], nrm[None], torch.ops.mentor3ad.knn_within_idx32(*args), pts.new_empty(0), order, -1.0))


@cpu_kernels
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cpu_spatial_order_is_the_stable_sort_of_the_codes(dtype):
    # On the CPU the query order is one C++ call (csrc/knn/morton_order.h) instead of torch's frame
    # reductions and stable argsort: the same permutation, ragged and empty clouds, duplicates
    # (equal codes keep index order) and a flat cloud (zero extent on one axis) included.
    from mentor3ad_ext.ops._spatial import morton_codes, morton_frame, spatial_order

    g = torch.Generator().manual_seed(0)
    pts = torch.rand((4, 3000, 3), generator=g, dtype=torch.float64).to(dtype)
    pts[1, 100:200] = pts[1, :100]  # duplicates
    pts[2, :, 2] = 0.5  # flat
    lengths = torch.tensor([3000, 2500, 1, 0])
    want = torch.argsort(morton_codes(pts, lengths, morton_frame(pts, lengths)), dim=1, stable=True)
    assert torch.equal(spatial_order(pts, lengths), want)


def test_torch_compile():
    # fullgraph: the neighbour search, its Morton query order and the histograms are all custom
    # ops (a raw kernel call in between used to break the graph)
    pts = wavy_surface(300, seed=2)[None].float()
    f = torch.compile(lambda a: m.fpfh(a, m.estimate_normals(a, k=10), max_nn=16), fullgraph=True)
    torch.testing.assert_close(f(pts), m.fpfh(pts, m.estimate_normals(pts, k=10), max_nn=16))
