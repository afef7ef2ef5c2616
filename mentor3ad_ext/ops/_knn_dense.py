"""Exact kNN in feature space (squared L2, D >= DENSE_MIN_D): a matrix-product filter, then the kernel.

The C++ kNN scans every point per query for D > 8 (index-order sums, no tree): exact, but a
784 x 20k search in 1152 dimensions took 4.3 s on the CPU where torch.cdist + topk (one matrix
product) took 0.27 s with inexact distances. Here the matrix product only proposes candidates
and the kernel decides, so the result is the scan's, bit for bit:

1. approximate distances a = |q|^2 + |p|^2 - 2 q.p (one GEMM per chunk of queries, in the
   inputs' precision; float64 when float32 products may be computed in reduced precision). For
   any summation order they are within E = 2 gamma(D + 8) (|q| + max|p|)^2 of the true distance,
   gamma(n) = n u / (1 - n u), u the unit roundoff (the classic dot-product bound; the squared
   norms, from vector_norm, carry twice a norm's relative error; slack included).
2. The kernel's own distance d (index-order float sum of squared differences) is within a
   factor 1 +- delta, delta = gamma(D + 2), of the true one. So the K points with the smallest a
   all have d <= T = (a_K + E)(1 + delta), and a point can be among the K nearest only if
   (a - E)(1 - delta) <= T, i.e. a <= thr = T / (1 - delta) + E (computed in float64, inflated).
3. The K + M smallest a per query are the candidates; they are complete when the (K + M)-th is
   above thr (else M grows, then the row goes to the full scan). The kernel ranks each query's
   candidates, listed in ascending index so that its ties still go to the lower index.

Non-finite approximations (overflow) fail the completeness test: those rows take the full scan.

Two drivers share these steps. On the CPU kernels, one cloud at a time, with host decisions
(which rows settled, which M). On CUDA (and the emulator) the batch at once without a host
synchronisation: one candidate list of the largest M per row, each row ranked over the shortest
prefix that settles it, and the rows that none settles scanned in full by one masked call (they
are moved to the front of their cloud and the scan is told only that many queries).
"""
from __future__ import annotations

import functools
import math
import os

import torch

from ._launch import C, dtype_tag, host_kernels, ptr

# Below D = 9 the CPU kernels search a KD-tree (csrc/knn/knn_cpu.cpp), which beat the filter on
# uniform points up to D = 8 (1.1-2.3x). Against the index-order scan, 2-core EPYC, oneDNN's
# product, cache-sized blocks, the C++ row selection, over 256 or 4096 queries x 4k, 16k or 100k
# points, K = 1 or 16, the filter took: D = 8 1.16-2.54x less time; D = 16 1.81-4.07x; D = 128
# 5.7-12.7x.
DENSE_MIN_D = 9
# On CUDA the batched driver against the warp-per-query scan (H200, 4096 queries x 16k points,
# K = 16, scripts/profile_knn_dense.py): D = 16 the scan took 0.73x the filter's time, D = 32 the
# filter 0.38x the scan's (2.6x), D = 64 5.6x, D = 128-1152 11-74x. The ratio crosses 1 near D = 20.
DENSE_MIN_D_CUDA = 20
_CHUNK_ELEMS = 1 << 23  # candidate blocks (and distance blocks at large D) stay below ~32 MiB (float32)
_CACHE_ELEMS = 1 << 21  # CPU distance blocks of ~8 MiB: the selection reads them back from the cache
_CUDA_CHUNK_ELEMS = 1 << 25  # ~128 MiB on a GPU: fewer, larger products and launches


def _product_rows(device: torch.device, n_points: int, D: int) -> int:
    """Query rows per product over n_points points. On the CPU a block that stays in the cache
    makes the selection's pass over it cheap, but every product packs all the points again, which at
    large D costs more than the cache saves, so at least D / 2 rows (within _CHUNK_ELEMS).
    2-core EPYC, ms with blocks of 2M / 8M elements: 4096 x 16k, K = 16: D = 16 65 / 140,
    D = 64 89 / 166, D = 256 185 / 244; 1024 x 16k, K = 10: D = 16 15 / 16, D = 256 44 / 40;
    784 x 20k, K = 1, D = 1152: 120 / 104 (4M: 116)."""
    if device.type == "cuda":
        return max(1, _CUDA_CHUNK_ELEMS // n_points)
    return max(1, _CACHE_ELEMS // n_points, min(D // 2, _CHUNK_ELEMS // n_points))


def _more(K: int) -> tuple[int, ...]:
    """The candidate margins M tried in turn: few candidates usually settle a row."""
    return (4 + K // 4, 16 + K, 64 + 4 * K)


def _gamma(n: int, dtype: torch.dtype) -> float:
    u = 2.0 ** -24 if dtype == torch.float32 else 2.0 ** -53
    return n * u / (1 - n * u)


def _points_to_spare(n2: int, K: int) -> bool:
    """Whether a cloud of n2 points leaves the filter enough to discard (else the scan alone)."""
    return n2 >= 4 * K + 64


def dense_pays(p1: torch.Tensor, P2: int, K: int, norm: int) -> bool:
    """Whether the filter serves this call (squared L2, feature-sized D, points to spare).
    `M3AD_KNN_DENSE=0` turns it off (the plain scan), for measurements."""
    D = p1.shape[2]
    min_d = DENSE_MIN_D_CUDA if p1.device.type == "cuda" else DENSE_MIN_D
    return (norm == 2 and D >= min_d and _points_to_spare(P2, K)
            and p1.dtype in (torch.float32, torch.float64) and os.environ.get("M3AD_KNN_DENSE", "1") != "0")


def _ieee_float32_matmul(device: torch.device) -> bool:
    """Whether float32 products on `device` are IEEE float32 (no TF32/bf16 shortcuts)."""
    backend = torch.backends.mkldnn if device.type == "cpu" else torch.backends.cuda
    prec = getattr(getattr(backend, "matmul", None), "fp32_precision", None)  # torch >= 2.9
    if prec is not None:
        return prec in ("none", "ieee")
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return False
    try:
        return torch.get_float32_matmul_precision() == "highest"
    except RuntimeError:  # legacy and new precision settings mixed: assume the worst
        return False


def _gemm_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    # the bound assumes IEEE products: reduced-precision float32 matmuls multiply in float64
    if dtype == torch.float32 and not _ieee_float32_matmul(device):
        return torch.float64
    return dtype


@functools.lru_cache(maxsize=None)
def _onednn_linear():
    """oneDNN's dense linear, where this torch has it. On the 2-core EPYC it multiplied 784 x
    1152 by 1152 x 20k in 75 ms, MKL's addmm (torch's CPU BLAS) in 179 ms."""
    try:
        if torch.backends.mkldnn.is_available():
            return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        pass
    return None


def _approx(q: torch.Tensor, p: torch.Tensor, qn2: torch.Tensor, pn2: torch.Tensor) -> torch.Tensor:
    """|q|^2 + |p|^2 - 2 q.p: (r, D) x (n, D) -> (r, n), or batched (B, r, D) x (B, n, D)."""
    if q.dim() == 2:
        lin = _onednn_linear() if q.device.type == "cpu" and q.dtype == torch.float32 else None
        if lin is not None:
            try:  # -2 q is exact; the bound covers any order of the sums
                return lin(q * -2, p, pn2, "none", [], "").add_(qn2[:, None])
            except RuntimeError:
                pass
        return torch.addmm(pn2[None, :] + qn2[:, None], q, p.T, alpha=-2)
    return torch.baddbmm(pn2[:, None, :] + qn2[..., None], q, p.transpose(1, 2), alpha=-2)


def _smallest(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The m smallest entries of each row of a (r, n) CPU block, ascending: (values, columns), by
    the C++ row selection (csrc/knn/row_smallest.h: one comparison per entry against the current
    m-th value, 16 entries at a time; torch.topk cost ~0.6 ns per entry). The host driver's step;
    the batched one keeps torch.topk, on its device."""
    a = a.contiguous()
    vals = a.new_empty((a.shape[0], m))
    cols = torch.empty((a.shape[0], m), dtype=torch.int64)
    if a.shape[0]:
        C().row_smallest(ptr(a), a.shape[0], a.shape[1], m, dtype_tag(a), ptr(vals), ptr(cols))
    return vals, cols


class _Bound:
    """The settle threshold of steps 1-2 for queries with squared norms qn2 over points whose
    largest norm is pmax (float64 tensors broadcasting against each other)."""

    def __init__(self, D: int, gemm_dtype: torch.dtype, dtype: torch.dtype):
        self.e_scale = 2 * _gamma(D + 8, gemm_dtype) * 1.01  # twice: squared norms, twice a norm's error
        self.delta = _gamma(D + 2, dtype) * 1.01

    def error(self, qn2: torch.Tensor, pmax: torch.Tensor) -> torch.Tensor:
        return self.e_scale * (qn2.double().clamp(min=0).sqrt() + pmax) ** 2

    def threshold(self, a_K: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
        T = (a_K.double() + E) * (1 + self.delta)
        return (T / (1 - self.delta) + E) * (1 + 1e-12)


def knn_dense_into(dists, idx, p1, p2, lengths1, lengths2, K: int, scan) -> None:
    """Fills dists/idx (B, P1, K) like `scan(dists, idx, p1, p2, lengths1, lengths2, K, 2)` does."""
    if host_kernels(p1):
        _host(dists, idx, p1, p2, lengths1, lengths2, K, scan)
    else:
        _batched(dists, idx, p1, p2, lengths1, lengths2, K, scan)


# -- CPU kernels: one cloud at a time, host decisions -------------------------------------------

def _host(dists, idx, p1, p2, lengths1, lengths2, K, scan) -> None:
    B, P1, D = p1.shape
    P2 = p2.shape[1]
    dists.zero_()
    idx.fill_(-1)
    n1s = lengths1.tolist() if lengths1 is not None else [P1] * B
    n2s = lengths2.tolist() if lengths2 is not None else [P2] * B
    for b in range(B):
        n1, n2 = int(n1s[b]), int(n2s[b])
        if n1 == 0:
            continue
        q, p = p1[b, :n1], p2[b, :n2]
        if not _points_to_spare(n2, K):
            scan(dists[b:b + 1, :n1], idx[b:b + 1, :n1], q[None], p[None], None, None, K, 2)
            continue
        _cloud(dists[b, :n1], idx[b, :n1], q, p, K, scan)


def _cloud(dists, idx, q, p, K, scan) -> None:
    n1, D = q.shape
    n2 = p.shape[0]
    gd = _gemm_dtype(q.dtype, q.device)
    qg, pg = q.to(gd), p.to(gd)
    # squared norms without a (n, D) temporary (its first touch cost more than the sums)
    pn2 = torch.linalg.vector_norm(pg, dim=1).square()
    qn2 = torch.linalg.vector_norm(qg, dim=1).square()
    bound = _Bound(D, gd, q.dtype)
    pmax = pn2.max().double().clamp(min=0).sqrt()
    rows = min(n1, _product_rows(q.device, n2, D))
    pending = []  # rows the candidates did not settle
    for r0 in range(0, n1, rows):
        r1 = min(n1, r0 + rows)
        a = _approx(qg[r0:r1], pg, qn2[r0:r1], pn2)
        E = bound.error(qn2[r0:r1], pmax)
        left = torch.arange(r0, r1)
        for M in _more(K):
            m = min(n2, K + M)
            rows_a = a if len(left) == r1 - r0 else a[left - r0]  # (a copy: only when rows are left)
            vals, cand = _smallest(rows_a, m)
            thr = bound.threshold(vals[:, K - 1], E[left - r0])
            done = vals[:, m - 1].double() > thr if m < n2 else torch.ones(len(left), dtype=torch.bool)
            if done.any():
                _rank_rows(dists, idx, q, p, left[done], cand[done], K, scan)
            left = left[~done]
            if not len(left):
                break
        pending.append(left)
    rest = torch.cat(pending) if pending else torch.empty(0, dtype=torch.int64)
    if len(rest):
        d, i = dists.new_empty((len(rest), K)), idx.new_empty((len(rest), K))
        scan(d[None], i[None], q[rest][None], p[None], None, None, K, 2)
        dists[rest], idx[rest] = d, i


def _rank_rows(dists, idx, q, p, rows, cand, K, scan) -> None:
    """The kernel's K nearest among each row's candidates (ascending indices: same ties)."""
    cand, _ = torch.sort(cand, dim=1)
    m = cand.shape[1]
    step = max(1, _CHUNK_ELEMS // (m * q.shape[1]))
    for s0 in range(0, len(rows), step):
        rs, cs = rows[s0:s0 + step], cand[s0:s0 + step]
        d, i = _rank(q[rs], p[cs], cs, None, K, scan)
        dists[rs], idx[rs] = d, i


def _rank(q, pts, cand, counts, K, scan):
    """Scan n queries (n, D) over their own candidate rows pts (n, m, D) with point indices cand
    (n, m), the first counts[r] of each (all when None); (n, K) distances and point indices."""
    n = q.shape[0]
    d = pts.new_empty((n, 1, K))
    i = cand.new_empty((n, 1, K))
    scan(d, i, q[:, None, :].contiguous(), pts, None, counts, K, 2)
    j = i[:, 0]
    # -1 stays -1: slots past the candidates, NaN distances (checks off)
    return d[:, 0], torch.where(j >= 0, cand.gather(1, j.clamp(min=0)), j)


# -- CUDA (and the emulator): the whole batch, no host synchronisation --------------------------

def _batched(dists, idx, p1, p2, lengths1, lengths2, K, scan) -> None:
    B, P1, D = p1.shape
    P2 = p2.shape[1]
    dev = p1.device
    gd = _gemm_dtype(p1.dtype, dev)
    qg, pg = p1.to(gd), p2.to(gd)
    col_ok = torch.arange(P2, device=dev) < lengths2[:, None]  # (B, P2)
    row_ok = torch.arange(P1, device=dev) < lengths1[:, None]  # (B, P1)
    pn2 = torch.linalg.vector_norm(pg, dim=2).square().masked_fill(~col_ok, 0)
    qn2 = torch.linalg.vector_norm(qg, dim=2).square()
    bound = _Bound(D, gd, p1.dtype)
    pmax = pn2.max(dim=1).values.double().clamp(min=0).sqrt()[:, None]  # (B, 1)
    widths = sorted({min(P2, K + M) for M in _more(K)})
    m = widths[-1]
    unsettled = torch.zeros((B, P1), dtype=torch.bool, device=dev)
    rows = min(P1, _product_rows(dev, B * P2, D))  # the product's rows; its candidates' in steps
    step = max(1, (_CUDA_CHUNK_ELEMS if dev.type == "cuda" else _CHUNK_ELEMS) // (B * m * D))
    slot = torch.arange(m, device=dev)
    for r0 in range(0, P1, rows):
        r1 = min(P1, r0 + rows)
        a = _approx(qg[:, r0:r1], pg, qn2[:, r0:r1], pn2).masked_fill_(~col_ok[:, None, :], math.inf)
        vals, cand = torch.topk(a, m, dim=2, largest=False, sorted=True)
        del a
        thr = bound.threshold(vals[..., K - 1], bound.error(qn2[:, r0:r1], pmax))
        # each row's shortest settling prefix (with all P2 points listed, every row settles)
        width = torch.full_like(cand[..., 0], m if m == P2 else m + 1)
        for w in reversed(widths):
            if w < P2:
                width = torch.where(vals[..., w - 1].double() > thr, w, width)
        unsettled[:, r0:r1] = width > m
        # candidates past the prefix become P2 (sorted last, never counted); padding is >= length
        cand = torch.sort(torch.where(slot < width[..., None], cand, P2), dim=2).values
        counts = (cand < lengths2[:, None, None]).sum(2)
        for s0 in range(0, r1 - r0, step):
            s1 = min(r1 - r0, s0 + step)
            cs = cand[:, s0:s1]
            pts = _gather_rows_of(p2, cs.clamp(max=P2 - 1))
            d, i = _rank(p1[:, r0 + s0:r0 + s1].reshape(-1, D), pts.reshape(-1, m, D), cs.reshape(-1, m),
                         counts[:, s0:s1].reshape(-1), K, scan)
            dists[:, r0 + s0:r0 + s1], idx[:, r0 + s0:r0 + s1] = d.view(B, s1 - s0, K), i.view(B, s1 - s0, K)
    unsettled &= row_ok
    # the unsettled rows, moved to the front of their cloud, are the only queries the scan sees
    order = torch.sort(unsettled.to(torch.int8), dim=1, descending=True, stable=True).indices
    d, i = torch.empty_like(dists), torch.empty_like(idx)
    scan(d, i, p1.gather(1, order[..., None].expand(-1, -1, D)).contiguous(), p2,
         unsettled.sum(1), lengths2, K, 2)
    back = torch.empty_like(order).scatter_(1, order, torch.arange(P1, device=dev).expand(B, P1))
    back = back[..., None].expand(-1, -1, K)
    dists.copy_(torch.where(unsettled[..., None], d.gather(1, back), dists))
    idx.copy_(torch.where(unsettled[..., None], i.gather(1, back), idx))
    dists.masked_fill_(~row_ok[..., None], 0)
    idx.masked_fill_(~row_ok[..., None], -1)


def _gather_rows_of(p: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """p (B, P, D) rows at cand (B, r, m) -> (B, r, m, D)."""
    B, r, m = cand.shape
    return p.gather(1, cand.reshape(B, r * m, 1).expand(-1, -1, p.shape[2])).view(B, r, m, p.shape[2])
