"""Exact CPU kNN in feature space (squared L2, D >= DENSE_MIN_D): a BLAS filter, then the kernel.

The C++ kNN scans every point per query for D > 3 (index-order sums, no tree): exact, but a
784 x 20k search in 1152 dimensions took 4.3 s where torch.cdist + topk (one matrix product)
took 0.27 s with inexact distances. Here the matrix product only proposes candidates and the
kernel decides, so the result is the scan's, bit for bit:

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
   above thr (else M grows, twice, then the row goes to the full scan). The kernel ranks each
   query's candidates, listed in ascending index so that its ties still go to the lower index.

Non-finite approximations (overflow) fail the completeness test: those rows take the full scan.
"""
from __future__ import annotations

import math

import torch

# Below, the scan is cheap per pair and the filter's passes do not pay: on the 2-core EPYC the
# filter took 0.27-0.76x the scan's time at D = 8-32 and 1.4-2.3x at D = 64 (1024 x 16k, 4096 x
# 4096 and 784 x 20k queries x points).
DENSE_MIN_D = 48
_CHUNK_ELEMS = 1 << 23  # approximate-distance and candidate blocks stay below ~32 MiB (float32)


def _gamma(n: int, dtype: torch.dtype) -> float:
    u = 2.0 ** -24 if dtype == torch.float32 else 2.0 ** -53
    return n * u / (1 - n * u)


def _points_to_spare(n2: int, K: int) -> bool:
    """Whether a cloud of n2 points leaves the filter enough to discard (else the scan alone)."""
    return n2 >= 4 * K + 64


def dense_pays(p1: torch.Tensor, P2: int, K: int, norm: int) -> bool:
    """Whether the filter serves this CPU call (squared L2, feature-sized D, points to spare)."""
    D = p1.shape[2]
    return norm == 2 and D >= DENSE_MIN_D and _points_to_spare(P2, K) and p1.dtype in (torch.float32, torch.float64)


def _gemm_dtype(dtype: torch.dtype) -> torch.dtype:
    # float32 matmuls may run in reduced precision (TF32/bf16) below "highest": the bound assumes IEEE.
    if dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        return torch.float64
    return dtype


def knn_dense_into(dists, idx, p1, p2, lengths1, lengths2, K: int, scan) -> None:
    """Fills dists/idx (B, P1, K) like `scan(dists, idx, p1, p2, lengths1, lengths2, K, 2)` does."""
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
    gd = _gemm_dtype(q.dtype)
    qg, pg = q.to(gd), p.to(gd)
    # squared norms without a (n, D) temporary (its first touch cost more than the sums)
    pn2 = torch.linalg.vector_norm(pg, dim=1).square()
    qn2 = torch.linalg.vector_norm(qg, dim=1).square()
    e_scale = 2 * _gamma(D + 8, gd) * 1.01  # twice: squared norms carry twice a norm's relative error
    delta = _gamma(D + 2, q.dtype) * 1.01
    pmax = math.sqrt(max(float(pn2.max()), 0.0)) if n2 else 0.0
    rows = max(1, min(n1, _CHUNK_ELEMS // n2))
    pending = []  # rows the candidates did not settle
    for r0 in range(0, n1, rows):
        r1 = min(n1, r0 + rows)
        a = torch.addmm(pn2[None, :] + qn2[r0:r1, None], qg[r0:r1], pg.T, beta=1, alpha=-2)
        E = e_scale * (qn2[r0:r1].clamp(min=0).sqrt().double() + pmax) ** 2
        left = torch.arange(r0, r1)
        for M in (4 + K // 4, 16 + K, 64 + 4 * K):  # few candidates usually settle a row
            m = min(n2, K + M)
            vals, cand = torch.topk(a[left - r0], m, dim=1, largest=False, sorted=True)
            vals = vals.double()
            e = E[left - r0]
            T = (vals[:, K - 1] + e) * (1 + delta)
            thr = (T / (1 - delta) + e) * (1 + 1e-12)
            done = vals[:, m - 1] > thr if m < n2 else torch.ones(len(left), dtype=torch.bool)
            if done.any():
                _rank(dists, idx, q, p, left[done], cand[done], K, scan)
            left = left[~done]
            if not len(left):
                break
        pending.append(left)
    rest = torch.cat(pending) if pending else torch.empty(0, dtype=torch.int64)
    if len(rest):
        d, i = dists.new_empty((len(rest), K)), idx.new_empty((len(rest), K))
        scan(d[None], i[None], q[rest][None], p[None], None, None, K, 2)
        dists[rest], idx[rest] = d, i


def _rank(dists, idx, q, p, rows, cand, K, scan) -> None:
    """The kernel's K nearest among each row's candidates (ascending indices: same ties)."""
    cand, _ = torch.sort(cand, dim=1)
    n, m = cand.shape
    step = max(1, _CHUNK_ELEMS // (m * q.shape[1]))
    for s0 in range(0, n, step):
        rs, cs = rows[s0:s0 + step], cand[s0:s0 + step]
        pts = p[cs]  # (r, m, D)
        d = dists.new_empty((len(rs), 1, K))
        i = idx.new_empty((len(rs), 1, K))
        scan(d, i, q[rs][:, None, :].contiguous(), pts, None, None, K, 2)
        dists[rs] = d[:, 0]
        j = i[:, 0]
        idx[rs] = torch.where(j >= 0, cs.gather(1, j.clamp(min=0)), j)  # -1: NaN distances (checks off)
