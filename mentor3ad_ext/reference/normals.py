"""Normal estimation by numpy's eigh on brute-force neighbourhoods (slow, obvious).

Same contract as `mentor3ad_ext.estimate_normals`: the k nearest neighbours (ties to the lower
index), optionally only those with squared distance < radius**2; float64 covariance around the
mean; the eigenvector of the smallest eigenvalue; the zero normal (curvature 0) for fewer than
3 neighbours and for neighbourhoods of rank < 2 (middle eigenvalue <= 1e-7 x the largest).
The eigenvector's sign from eigh is arbitrary: compare with orient="viewpoint", or up to sign.
"""
from __future__ import annotations

import numpy as np
import torch

from .knn import knn_points

COLLINEAR_RATIO = 1e-7  # csrc/normals/sym_eigen3.h kCollinearRatio


def neighbour_lists(points: torch.Tensor, lengths, k: int, radius):
    """Per cloud, per point: the int64 array of neighbour indices the fast ops use."""
    pts = points.float() if points.dtype in (torch.float16, torch.bfloat16) else points
    res = knn_points(pts, pts, lengths, lengths, K=k)
    r2 = None if radius is None else torch.tensor(float(radius) * float(radius), dtype=torch.float64).to(pts.dtype)
    out = []
    for b in range(pts.shape[0]):
        rows = []
        for i in range(pts.shape[1]):
            idx, d = res.idx[b, i], res.dists[b, i]
            keep = idx >= 0
            if r2 is not None:
                keep &= d < r2
            # The list is sorted: only the leading run counts.
            n = int(torch.cumprod(keep.to(torch.int64), 0).sum())
            rows.append(idx[:n].numpy())
        out.append(rows)
    return pts, out


def pca_normal(nbrs: np.ndarray):
    """(normal (3,), curvature) of an (n, 3) float64 neighbourhood."""
    if len(nbrs) < 3:
        return np.zeros(3), 0.0
    c = nbrs - nbrs.mean(0)
    cov = c.T @ c / len(nbrs)
    if not np.any(cov):
        return np.zeros(3), 0.0
    w, v = np.linalg.eigh(cov)
    if not (w[2] > 0) or not (w[1] > COLLINEAR_RATIO * w[2]):
        return np.zeros(3), 0.0
    l0 = max(w[0], 0.0)
    return v[:, 0], l0 / (l0 + w[1] + w[2])


def estimate_normals(points, lengths=None, k=30, radius=None, orient="viewpoint",
                     viewpoint=(0.0, 0.0, 0.0), *, direction=(0.0, 0.0, 1.0), return_curvature=False):
    pts, lists = neighbour_lists(points, lengths, k, radius)
    B, P, _ = pts.shape
    normals = np.zeros((B, P, 3))
    curv = np.zeros((B, P))
    vp = np.asarray(viewpoint, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    for b in range(B):
        cloud = pts[b].double().numpy()
        for i, nb in enumerate(lists[b]):
            n, c = pca_normal(cloud[nb])
            if orient == "viewpoint" and np.dot(n, vp - cloud[i]) < 0:
                n = -n
            if orient == "direction" and np.dot(n, d) < 0:
                n = -n
            normals[b, i], curv[b, i] = n, c
    n_t = torch.from_numpy(normals).to(pts.dtype)
    return (n_t, torch.from_numpy(curv).to(pts.dtype)) if return_curvature else n_t
