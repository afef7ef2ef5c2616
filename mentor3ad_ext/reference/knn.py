"""Brute-force kNN, ball query and gather in plain torch (one cloud at a time)."""
from collections import namedtuple

import torch

from ._dist import sqdist

KNN = namedtuple("KNN", ["dists", "idx", "knn"])


def _lengths(lengths, B, P):
    return [P] * B if lengths is None else [int(v) for v in lengths]


def _prep(p1, p2):
    a = p1.float() if p1.dtype in (torch.float16, torch.bfloat16) else p1
    b = p2.float() if p2.dtype in (torch.float16, torch.bfloat16) else p2
    if a.dtype != b.dtype:
        a, b = a.double(), b.double()
    return a, b


def _pairwise(q, pts, norm):
    if norm == 1:
        d = None
        for j in range(q.shape[-1]):
            t = (q[:, None, j] - pts[None, :, j]).abs()
            d = t if d is None else d + t
        return d
    return sqdist(q[:, None, :], pts[None, :, :])


def _per_cloud(p1, p2, lengths1, lengths2, K, norm):
    """Zeroed (dists, idx=-1) outputs and, per non-empty cloud, (b, its (n1, n2) distance matrix)."""
    a, b = _prep(p1, p2)
    B, P1, _ = a.shape
    n1s, n2s = _lengths(lengths1, B, P1), _lengths(lengths2, B, b.shape[1])
    dists = torch.zeros((B, P1, K), dtype=a.dtype, device=a.device)
    idx = torch.full((B, P1, K), -1, dtype=torch.int64, device=a.device)
    clouds = [(i, _pairwise(a[i, :n1s[i]], b[i, :n2s[i]], norm)) for i in range(B) if n1s[i] and n2s[i]]
    return dists, idx, clouds


def knn_points(p1, p2, lengths1=None, lengths2=None, K=1, return_nn=False, return_sorted=True, *, norm=2):
    """Materialises the full (P1, P2) distance matrix; ascending (distance, index) order."""
    dists, idx, clouds = _per_cloud(p1, p2, lengths1, lengths2, K, norm)
    for i, d in clouds:
        # A stable sort keeps equal distances in index order.
        order = torch.sort(d, dim=1, stable=True).indices[:, :K]
        n1, k = order.shape
        idx[i, :n1, :k] = order
        dists[i, :n1, :k] = torch.gather(d, 1, order)
    nn = knn_gather(p2, idx, lengths2) if return_nn else None
    return KNN(dists, idx, nn)


def knn_gather(x, idx, lengths=None):
    B, L, K = idx.shape
    out = x.new_zeros((B, L, K, x.shape[2]))
    for i in range(B):
        for k in range(K):
            valid = idx[i, :, k] >= 0
            if lengths is not None and k >= int(lengths[i]):
                continue
            out[i, valid, k] = x[i, idx[i, valid, k]]
    return out


def ball_query(p1, p2, lengths1=None, lengths2=None, K=500, radius=0.2, return_nn=True):
    """The first K points in index order with squared distance < radius**2 (rounded to the dtype)."""
    dists, idx, clouds = _per_cloud(p1, p2, lengths1, lengths2, K, 2)
    r2 = torch.tensor(float(radius) * float(radius), dtype=torch.float64).to(dists.dtype)
    for i, d in clouds:
        for q in range(d.shape[0]):
            hits = torch.nonzero(d[q] < r2).flatten()[:K]
            idx[i, q, : len(hits)] = hits
            dists[i, q, : len(hits)] = d[q, hits]
    nn = knn_gather(p2, idx) if return_nn else None
    return KNN(dists, idx, nn)
