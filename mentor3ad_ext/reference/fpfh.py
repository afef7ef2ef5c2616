"""FPFH in plain numpy, written from the definition open3d implements (slow, obvious).

Per point i with neighbours N(i) = [i, j1, j2, ...] (the fast ops' neighbour lists, the point
itself first), n = |N(i)|:

* pair features of (p_i, n_i) -> (p_j, n_j): with d = p_j - p_i, pick as source the point whose
  normal is closer to parallel to d (larger |cos|, p_i on a tie; swapping negates d); u = source
  normal, t = the other; v = (d x u) / |d x u|; w = u x v;
  alpha = atan2(w.t, u.t), phi = v.t, theta = u.d / |d|; (0, 0, 0) when |d| = 0 or d x u = 0.
* SPFH_i: 11 bins per feature (alpha over [-pi, pi], phi and theta over [-1, 1], clamped),
  each pair adding 100 / (n - 1); zero when n <= 1.
* FPFH_i = SPFH_i + (sum_j SPFH_j * (1 / |p_i - p_j|^2)), each 11-bin block rescaled to sum 100;
  neighbours at distance 0 are left out; zero when n <= 1.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .normals import neighbour_lists


def _dot(a, b) -> float:
    # Python floats in the kernels' operation order ((x + y) + z, no FMA), so that the source
    # choice |cos1| < |cos2| - decided by rounding when two normals are equal, and flipping the
    # sign of theta - comes out as in the kernels.
    return (a[0] * b[0] + a[1] * b[1]) + a[2] * b[2]


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def pair_features(p1, n1, p2, n2):
    p1, n1, p2, n2 = (tuple(float(c) for c in v) for v in (p1, n1, p2, n2))
    d = (p2[0] - p1[0], p2[1] - p1[1], p2[2] - p1[2])
    length = math.sqrt(_dot(d, d))
    if length == 0.0:
        return 0.0, 0.0, 0.0
    c1, c2 = _dot(n1, d) / length, _dot(n2, d) / length
    if abs(c1) < abs(c2):
        u, t, d, theta = n2, n1, (-d[0], -d[1], -d[2]), -c2
    else:
        u, t, theta = n1, n2, c1
    v = _cross(d, u)
    vn = math.sqrt(_dot(v, v))
    if vn == 0.0:
        return 0.0, 0.0, 0.0
    v = (v[0] / vn, v[1] / vn, v[2] / vn)
    w = _cross(u, v)
    return math.atan2(_dot(w, t), _dot(u, t)), _dot(v, t), theta


def _bin(x: float) -> int:
    return min(max(int(math.floor(x)), 0), 10)


def spfh(pts: np.ndarray, nrm: np.ndarray, lists) -> np.ndarray:
    out = np.zeros((len(pts), 33))
    for i, nb in enumerate(lists):
        if len(nb) <= 1:
            continue
        incr = 100.0 / (len(nb) - 1)
        for j in nb[1:]:
            a, phi, theta = pair_features(pts[i], nrm[i], pts[j], nrm[j])
            out[i, _bin(11 * (a + math.pi) / (2 * math.pi))] += incr
            out[i, 11 + _bin(11 * (phi + 1) * 0.5)] += incr
            out[i, 22 + _bin(11 * (theta + 1) * 0.5)] += incr
    return out


def fpfh(points, normals, lengths=None, radius=None, max_nn=100):
    pts_t, lists = neighbour_lists(points, lengths, max_nn, radius)
    nrm_t = normals.float() if normals.dtype in (torch.float16, torch.bfloat16) else normals
    dtype = torch.float64 if torch.float64 in (pts_t.dtype, nrm_t.dtype) else pts_t.dtype
    B, P, _ = pts_t.shape
    out = np.zeros((B, P, 33))
    for b in range(B):
        pts, nrm = pts_t[b].double().numpy(), nrm_t[b].double().numpy()
        s = spfh(pts, nrm, lists[b])
        for i, nb in enumerate(lists[b]):
            if len(nb) <= 1:
                continue
            acc = np.zeros(33)
            for j in nb[1:]:
                d2 = _dot(pts[j] - pts[i], pts[j] - pts[i])
                if d2 > 0:
                    acc += s[j] * (1.0 / d2)
            for blk in range(3):
                tot = acc[11 * blk:11 * blk + 11].sum()
                if tot != 0:
                    acc[11 * blk:11 * blk + 11] *= 100.0 / tot
            out[b, i] = acc + s[i]
    return torch.from_numpy(out).to(dtype)
