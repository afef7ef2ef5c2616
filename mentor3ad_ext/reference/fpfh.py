"""FPFH in plain numpy, written from the definition open3d implements (slow, obvious).

Per point i with neighbours N(i) = [i, j1, j2, ...] (the fast ops' neighbour lists, the point
itself first), n = |N(i)|:

* pair features of (p_i, n_i) -> (p_j, n_j): with d = p_j - p_i, pick as source the point whose
  normal is closer to parallel to d (larger |cos|, p_i on a tie; swapping negates d); u = source
  normal, t = the other; v = (d x u) / |d x u|; w = u x v;
  alpha = atan2(w.t, u.t), phi = v.t, theta = u.d / |d|; (0, 0, 0) when |d| = 0 or d x u = 0.
* SPFH_i: 11 bins per feature (alpha over [-pi, pi], phi and theta over [-1, 1], clamped),
  each pair adding 100 / (n - 1); zero when n <= 1.
* FPFH_i = SPFH_i + (sum_j SPFH_j / |p_i - p_j|^2), each 11-bin block rescaled to sum 100;
  neighbours at distance 0 are left out; zero when n <= 1.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .normals import neighbour_lists


def pair_features(p1, n1, p2, n2):
    d = p2 - p1
    length = math.sqrt(float(d @ d))
    if length == 0.0:
        return 0.0, 0.0, 0.0
    c1, c2 = float(n1 @ d) / length, float(n2 @ d) / length
    if abs(c1) < abs(c2):
        u, t, d, theta = n2, n1, -d, -c2
    else:
        u, t, theta = n1, n2, c1
    v = np.cross(d, u)
    vn = math.sqrt(float(v @ v))
    if vn == 0.0:
        return 0.0, 0.0, 0.0
    v = v / vn
    w = np.cross(u, v)
    return math.atan2(float(w @ t), float(u @ t)), float(v @ t), theta


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
                d2 = float(((pts[j] - pts[i]) ** 2).sum())
                if d2 > 0:
                    acc += s[j] / d2
            for blk in range(3):
                tot = acc[11 * blk:11 * blk + 11].sum()
                if tot != 0:
                    acc[11 * blk:11 * blk + 11] *= 100.0 / tot
            out[b, i] = acc + s[i]
    return torch.from_numpy(out).to(dtype)
