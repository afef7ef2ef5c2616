"""The deterministic scatter / gather primitives (mentor3ad_ext/ops/_scatter.py)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mentor3ad_ext as m
from mentor3ad_ext.ops import _scatter as S

from conftest import DEVICES, FLOAT_DTYPES, HAS_CUDA


def ref_plan(index, R):
    """Stable sort of (batch, row) keys: the contract of build_plan."""
    B, M = index.shape
    valid = (index >= 0) & (index < R)
    key = torch.where(valid, torch.arange(B)[:, None] * R + index, B * R).flatten()
    _, perm = torch.sort(key, stable=True)
    nvalid = int(valid.sum())
    order = torch.full((B * M,), -1, dtype=torch.int64)
    order[:nvalid] = (perm % M)[:nvalid] if M else perm[:nvalid]
    counts = torch.bincount(key[key < B * R], minlength=B * R)
    offsets = torch.zeros(B * R + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    return offsets, order


def ref_scatter(values, index, R, reduce, weights=None):
    """Entry-by-entry loop in float64 (ascending entry order), rounded once: the exact contract."""
    B, Sv, C = values.shape
    M = index.shape[1]
    K = M // Sv if Sv else 1
    v = values.double().cpu()
    w = None if weights is None else weights.double().cpu()
    idx = index.cpu()
    out = torch.zeros(B, R, C, dtype=torch.float64)
    arg = torch.full((B, R, C), -1, dtype=torch.int64)
    cnt = torch.zeros(B, R, dtype=torch.int64)
    for b in range(B):
        for mm in range(M):
            r = int(idx[b, mm])
            if r < 0:
                continue
            x = v[b, mm // K] * (1.0 if w is None else w[b, mm])
            if reduce == "max":
                take = (x > out[b, r]) | (cnt[b, r] == 0)
                out[b, r] = torch.where(take, x, out[b, r])
                arg[b, r] = torch.where(take, mm, arg[b, r])
            else:
                out[b, r] += x
            cnt[b, r] += 1
    if reduce == "mean":
        out = out / cnt.clamp(min=1)[..., None]
    return out.to(values.dtype), arg


def _rand_index(B, M, R, device, p_skip=0.2, g=None):
    idx = torch.randint(0, max(R, 1), (B, M), generator=g)
    idx[torch.rand(B, M, generator=g) < p_skip] = -1
    return idx.to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("B,M,R", [(1, 0, 5), (2, 7, 3), (3, 500, 40), (2, 64, 1000), (1, 5, 1)])
def test_plan_is_a_stable_counting_sort(device, B, M, R):
    idx = _rand_index(B, M, R, device)
    plan = S.build_plan(idx, R)
    offsets, order = ref_plan(idx.cpu(), R)
    assert torch.equal(plan.offsets.cpu(), offsets)
    assert torch.equal(plan.order.cpu(), order)
    valid = idx.cpu() >= 0
    counts = torch.stack([torch.bincount(idx.cpu()[b][valid[b]], minlength=R) for b in range(B)]) if B else None
    assert torch.equal(plan.counts().cpu(), counts)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("K", [1, 3])
def test_scatter_matches_entry_loop(device, dtype, reduce, K):
    B, Sv, C, R = 2, 40, 37, 9  # C > 32 and not a multiple: partial channel tiles
    vals = torch.randn(B, Sv, C, dtype=dtype, device=device)
    idx = _rand_index(B, Sv * K, R, device)
    w = torch.rand(B, Sv * K, dtype=dtype, device=device) if reduce != "max" else None
    out = S.scatter_rows(vals, idx, R, reduce, weights=w, return_argmax=True)
    ref, ref_arg = ref_scatter(vals, idx, R, reduce, w)
    if reduce == "max":
        out, arg = out
        assert torch.equal(arg.cpu(), ref_arg)
    # The contract is exact: sequential float64 accumulation in entry order, rounded once.
    assert torch.equal(out.cpu(), ref)
    cf = S.scatter_rows(vals, idx, R, reduce, weights=w, channels_first=True)
    assert cf.shape == (B, C, R) and cf.is_contiguous()
    assert torch.equal(cf.transpose(1, 2), out)


@pytest.mark.parametrize("device", DEVICES)
def test_sum_order_is_entry_order(device):
    # Floating point addition is not associative: only one order gives each of these results.
    vals = torch.tensor([[[1e16], [1.0], [-1e16], [-1e16], [1e16], [1.0]]], dtype=torch.float64, device=device)
    idx = torch.tensor([[0, 0, 0, 1, 1, 1]], device=device)
    out = S.scatter_rows(vals, idx, 2, "sum")
    assert out[0, :, 0].tolist() == [0.0, 1.0]
    # float32 values accumulate in float64: 2^24 + 1 + 1 is exact there, not in float32.
    v32 = torch.tensor([[[2.0 ** 24], [1.0], [1.0]]], device=device)
    assert S.scatter_rows(v32, torch.zeros(1, 3, dtype=torch.int64, device=device), 1)[0, 0, 0].item() == 2.0 ** 24 + 2


@pytest.mark.parametrize("device", DEVICES)
def test_max_ties_and_nan(device):
    vals = torch.tensor([[[1.0, 2.0], [3.0, 2.0], [3.0, float("nan")], [0.0, 5.0]]], device=device)
    idx = torch.tensor([[0, 0, 0, 1]], device=device)
    out, arg = S.scatter_rows(vals, idx, 3, "max", return_argmax=True)
    assert arg[0].tolist() == [[1, 2], [3, 3], [-1, -1]]  # tie 3.0 -> entry 1; NaN beats numbers
    assert out[0, 0, 0].item() == 3.0 and torch.isnan(out[0, 0, 1]) and out[0, 2].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_gather_and_adjointness(device, dtype):
    B, R, C, Sv, K = 2, 30, 45, 17, 4
    src_cf = torch.randn(B, C, R, dtype=dtype, device=device)
    src = src_cf.transpose(1, 2)  # channels-first view, read in place
    idx = _rand_index(B, Sv * K, R, device)
    w = torch.rand(B, Sv * K, dtype=dtype, device=device)
    out = S.gather_rows(src, idx, K, weights=w)
    ref = (src.contiguous().double().gather(1, idx.clamp(min=0)[..., None].expand(-1, -1, C))
           * (w.double() * (idx >= 0))[..., None]).view(B, Sv, K, C)
    # k ascending, float64, rounded once
    acc = torch.zeros(B, Sv, C, dtype=torch.float64, device=device)
    for k in range(K):
        acc = acc + ref[:, :, k]
    assert torch.equal(out, acc.to(dtype))
    # <scatter(v), g> == <v, gather(g)> with the same index and weights
    v = torch.randn(B, Sv, C, dtype=torch.float64, device=device)
    g = torch.randn(B, R, C, dtype=torch.float64, device=device)
    lhs = (S.scatter_rows(v, idx, R, weights=w.double()) * g).sum()
    rhs = (v * S.gather_rows(g, idx, K, weights=w.double())).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_gather_every_group_width_and_layout(device, dtype, monkeypatch):
    # On CUDA, groups of up to 8 entries between channel-contiguous rows with >= 32 channels take a
    # warp per output row (csrc/scatter/scatter_cuda.cu), the rest the tile kernel; both must give
    # the entry loop's bits: groups 1-9, channel counts around the warp width, skipped (-1)
    # entries, whole rows of them, weights or none, channels-first sources. M3AD_GATHER_ROWS=tiles
    # keeps every case on the tile kernel.
    g = torch.Generator().manual_seed(7)
    B, R, Sv = 2, 40, 13
    for K in (1, 2, 3, 4, 5, 8, 9):
        for C in (31, 32, 40, 77):
            src = torch.randn(B, R, C, generator=g, dtype=torch.float64).to(device, dtype)
            idx = _rand_index(B, Sv * K, R, device, g=g)
            idx[1, :K] = -1  # a row with no entry
            w = torch.rand(B, Sv * K, generator=g, dtype=torch.float64).to(device, dtype)
            cf = src.transpose(1, 2).contiguous().transpose(1, 2)  # same values, channels-first
            for weights in (None, w):
                want = ref_scatter_gather(src, idx, K, weights)
                for source in (src, cf):
                    got = S.gather_rows(source, idx, K, weights=weights)
                    assert torch.equal(got.cpu(), want), (K, C, weights is None, source is cf)
                    monkeypatch.setenv("M3AD_GATHER_ROWS", "tiles")
                    assert torch.equal(S.gather_rows(source, idx, K, weights=weights), got)
                    monkeypatch.delenv("M3AD_GATHER_ROWS")


def ref_scatter_gather(src, idx, K, weights):
    """The gather's contract: entries in ascending k, w * v in float64, rounded once."""
    B, _, C = src.shape
    Sv = idx.shape[1] // K
    v, i = src.double().cpu(), idx.cpu()
    w = torch.ones(i.shape, dtype=torch.float64) if weights is None else weights.double().cpu()
    acc = torch.zeros(B, Sv, C, dtype=torch.float64)
    for k in range(K):
        ik = i[:, k::K]
        x = v.gather(1, ik.clamp(min=0)[..., None].expand(-1, -1, C)) * w[:, k::K, None]
        acc = acc + torch.where((ik >= 0)[..., None], x, torch.zeros((), dtype=torch.float64))
    return acc.to(src.dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_scatter_gradcheck(device, reduce):
    g = torch.Generator().manual_seed(1)
    vals = torch.randn(2, 6, 5, dtype=torch.float64, generator=g).to(device).requires_grad_()
    idx = _rand_index(2, 12, 4, device, g=g)
    w = None
    if reduce != "max":
        w = torch.rand(2, 12, dtype=torch.float64, generator=g).to(device).requires_grad_()
    plan = S.build_plan(idx, 4)
    for cf in (False, True):
        assert torch.autograd.gradcheck(
            lambda v, w: S.scatter_rows(v, idx, 4, reduce, weights=w, plan=plan, channels_first=cf), (vals, w))


@pytest.mark.parametrize("device", DEVICES)
def test_gather_gradcheck(device):
    g = torch.Generator().manual_seed(2)
    src = torch.randn(2, 4, 7, dtype=torch.float64, generator=g).to(device).transpose(1, 2).requires_grad_()
    idx = _rand_index(2, 9, 7, device, g=g)
    w = torch.rand(2, 9, dtype=torch.float64, generator=g).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda s, w: S.gather_rows(s, idx, 3, weights=w), (src, w))
    # values-only paths are twice differentiable (gather <-> scatter are each other's backward)
    assert torch.autograd.gradgradcheck(lambda s: S.gather_rows(s, idx, 3, weights=w.detach()), (src,))


def test_backward_is_deterministic_and_thread_independent():
    B, N, C, R = 2, 20_000, 8, 50  # many collisions per row
    vals = torch.randn(B, N, C, requires_grad=True)
    idx = torch.randint(-1, R, (B, N))
    src = torch.randn(B, R, C, requires_grad=True)
    outs = []
    old = m.get_num_threads()
    try:
        for threads in (1, 2, 1):
            m.set_num_threads(threads)
            y = S.gather_rows(src, idx) * vals
            gs, gv = torch.autograd.grad(y.sum(), (src, vals))
            outs.append((gs, gv, S.scatter_rows(vals, idx, R, "mean")))
    finally:
        m.set_num_threads(old)
    for o in outs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(outs[0], o))


@pytest.mark.parametrize("device", DEVICES)
def test_empty_and_all_skipped(device):
    for reduce in ("sum", "mean", "max"):
        out = S.scatter_rows(torch.randn(2, 5, 3, device=device), torch.full((2, 5), -1, device=device), 4, reduce)
        assert torch.equal(out, torch.zeros(2, 4, 3, device=device))
        out = S.scatter_rows(torch.randn(2, 0, 3, device=device), torch.zeros(2, 0, dtype=torch.int64, device=device), 4, reduce)
        assert torch.equal(out, torch.zeros(2, 4, 3, device=device))
    assert S.scatter_rows(torch.randn(0, 5, 3, device=device), torch.zeros(0, 5, dtype=torch.int64, device=device), 4).shape == (0, 4, 3)
    assert S.scatter_rows(torch.randn(1, 5, 0, device=device), torch.zeros(1, 5, dtype=torch.int64, device=device), 4).shape == (1, 4, 0)
    g = S.gather_rows(torch.randn(1, 0, 3, device=device), torch.full((1, 4), -1, device=device), 2)
    assert torch.equal(g, torch.zeros(1, 2, 3, device=device))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: S.scatter_rows(torch.randn(1, 4, 2), torch.tensor([[0, 1, 5, 0]]), 5), ValueError,
     r"index must lie in \[0, 5\) or be -1 \(skip\), got 5 at index \(0, 2\)"),
    (lambda: S.scatter_rows(torch.randn(1, 4, 2), torch.tensor([[0, -2, 1, 0]]), 5), ValueError, "got -2 at index"),
    (lambda: S.scatter_rows(torch.randn(1, 4, 2), torch.tensor([[0, 1, 2]]), 5), ValueError,
     r"index must have shape \(B, S\*K\) = \(1, 4\*K\) for values of shape \(1, 4, 2\), got \(1, 3\)"),
    (lambda: S.scatter_rows(torch.randn(1, 4, 2), torch.zeros(1, 4), 5), TypeError, "index must be an integer tensor"),
    (lambda: S.scatter_rows(torch.zeros(1, 4, 2, dtype=torch.int64), torch.zeros(1, 4, dtype=torch.int64), 5),
     TypeError, "values must have dtype"),
    (lambda: S.scatter_rows(torch.randn(1, 4, 2), torch.zeros(1, 4, dtype=torch.int64), 5, "min"), ValueError,
     "reduce must be one of"),
    (lambda: S.scatter_rows(torch.randn(1, 4, 2), torch.zeros(1, 4, dtype=torch.int64), 5, "max",
                            weights=torch.ones(1, 4)), ValueError, "weights are not supported with reduce='max'"),
    (lambda: S.scatter_rows(torch.randn(1, 4, 2), torch.zeros(1, 4, dtype=torch.int64), 5, weights=torch.ones(1, 3)),
     ValueError, r"weights must have the shape of index \(1, 4\), got \(1, 3\)"),
    (lambda: S.scatter_rows(torch.randn(1, 4, 2), torch.zeros(1, 4, dtype=torch.int64), 5,
                            plan=S.build_plan(torch.zeros(1, 4, dtype=torch.int64), 6)), ValueError, "plan was built for"),
    (lambda: S.gather_rows(torch.randn(1, 4, 2), torch.tensor([[0, 4]])), ValueError, r"got 4 at index \(0, 1\)"),
    (lambda: S.gather_rows(torch.randn(1, 4, 2), torch.tensor([[0, 1, 2]]), 2), ValueError,
     r"index must have shape \(B, S\*group\)"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_opcheck():
    idx = torch.tensor([[0, 2, -1, 2, 1, 0], [1, 1, 1, -1, -1, 0]])
    vals = torch.randn(2, 3, 4, requires_grad=True)
    w = torch.rand(2, 6, requires_grad=True)
    offsets, order = S._rows_plan_op(idx, 3)
    torch.library.opcheck(torch.ops.mentor3ad.rows_plan, (idx, 3))
    for reduce in ("sum", "mean"):
        torch.library.opcheck(torch.ops.mentor3ad.scatter_rows, (vals, idx, offsets, order, 3, reduce, w, True))
    torch.library.opcheck(torch.ops.mentor3ad.scatter_rows, (vals, idx, offsets, order, 3, "max", None, False))
    src = torch.randn(2, 4, 3).transpose(1, 2).requires_grad_()
    torch.library.opcheck(torch.ops.mentor3ad.gather_rows, (src, idx, 2, w))
    torch.library.opcheck(torch.ops.mentor3ad.rows_dot, (torch.randn(2, 3, 40), idx, 1, torch.randn(2, 3, 40), None, 2, 6))
    _, am = S._scatter_rows_op(vals.detach(), idx, offsets, order, 3, "max", None, False)
    torch.library.opcheck(torch.ops.mentor3ad.scatter_max_backward, (torch.randn(2, 3, 4), am, idx, 3))


def test_rows_dot_order():
    # 32 lane partials then a fixed tree: reproduce it in Python (float64) for C = 70.
    a, v = torch.randn(1, 1, 70, dtype=torch.float64), torch.randn(1, 1, 70, dtype=torch.float64)
    got = S._rows_dot_op(a, None, 1, v, None, 1, 1)[0, 0].item()
    part = [0.0] * 32
    for c in range(70):
        part[c % 32] = part[c % 32] + a[0, 0, c].item() * v[0, 0, c].item()
    off = 16
    while off:
        for lane in range(off):
            part[lane] = part[lane] + part[lane + off]
        off //= 2
    assert got == part[0]


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cpu_cuda_bit_identical_and_no_sync(dtype):
    B, N, C, R = 3, 30_000, 70, 2_000
    vals = torch.randn(B, N, C, dtype=dtype)
    idx = torch.randint(-1, R, (B, N))
    w = torch.rand(B, N, dtype=dtype)
    src = torch.randn(B, C, R, dtype=dtype).transpose(1, 2)
    cpu = [S.build_plan(idx, R).order, *(S.scatter_rows(vals, idx, R, r, weights=w if r != "max" else None,
                                                        channels_first=True) for r in ("sum", "mean", "max")),
           S.gather_rows(src, idx, 1, weights=w), S._rows_dot_op(src, idx, 1, vals, None, 1, N)]
    d = [t.cuda() for t in (vals, idx, w, src)]  # a host-to-device copy synchronises by itself
    with m.value_checks(False):
        torch.cuda.set_sync_debug_mode("error")
        try:
            plan = S.build_plan(d[1], R)
            gpu = [plan.order, *(S.scatter_rows(d[0], d[1], R, r, weights=d[2] if r != "max" else None, plan=plan,
                                                channels_first=True) for r in ("sum", "mean", "max")),
                   S.gather_rows(d[3], d[1], 1, weights=d[2]), S._rows_dot_op(d[3], d[1], 1, d[0], None, 1, N)]
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b.cpu())


@settings(max_examples=30, deadline=None)
@given(B=st.integers(0, 3), M=st.integers(0, 60), R=st.integers(1, 20), C=st.integers(1, 40),
       reduce=st.sampled_from(["sum", "mean", "max"]), seed=st.integers(0, 2**16))
def test_property_matches_entry_loop(B, M, R, C, reduce, seed):
    g = torch.Generator().manual_seed(seed)
    vals = torch.randint(-3, 4, (B, M, C), generator=g).double()  # many ties for max
    idx = _rand_index(B, M, R, "cpu", g=g)
    out, arg = S.scatter_rows(vals, idx, R, reduce, return_argmax=True) if reduce == "max" else \
        (S.scatter_rows(vals, idx, R, reduce), None)
    ref, ref_arg = ref_scatter(vals, idx, R, reduce)
    assert torch.equal(out, ref)
    if arg is not None:
        assert torch.equal(arg, ref_arg)
