"""Background plane removal for organized point clouds (vectorised numpy, deterministic).

MVTec 3D-AD and Eyecandies objects lie on a flat support (table, conveyor) that fills the image
border.  The 3D-AD codebases (M3DM and followers) fit a plane with RANSAC to the points near the
image border, drop every point within a distance threshold of it, and clean the rest by keeping
large connected clusters.  This module does the same without Open3D:

1. RANSAC on the border points: a few hundred 3-point hypotheses scored at once against a
   subsample (one ``(points x hypotheses)`` distance matrix, a few MB), then a least-squares
   refit on the inliers of the best hypothesis.  Seeded, so the same cloud gives the same plane.
2. A point is background when its signed distance to the plane is below the threshold on the
   camera side, i.e. it is on the plane or behind it (the camera cannot see through the table,
   so points behind it are outliers).  The camera is the origin of the cloud's frame.
3. Small-cluster cleanup: connected components (8-connectivity) of the kept pixels on the image
   grid; components smaller than a fraction of the largest one are dropped (sensor speckle and
   plane remnants).  Grid connectivity is the organized-cloud stand-in for DBSCAN.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .io import valid_mask


@dataclass(frozen=True)
class Plane:
    """``normal . p + offset = 0``; ``normal`` is a unit vector pointing to the camera side."""

    normal: np.ndarray
    offset: float

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Distance of ``points (..., 3)`` to the plane, positive on the camera side."""
        return points @ self.normal.astype(points.dtype) + points.dtype.type(self.offset)


def _refit(points: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Least-squares plane through ``points (N, 3)``: the smallest principal axis.

    Uses the 3 x 3 scatter matrix (one pass over the points) instead of an SVD of the points.
    """
    if len(points) < 3:
        return None
    centroid = points.mean(axis=0)
    centred = points - centroid
    evals, evecs = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    if evals[1] <= 1e-12 * max(evals[2], 1e-300):
        return None  # all points on a line: no unique plane
    normal = evecs[:, 0]
    return normal, float(-normal @ centroid)


def fit_plane_ransac(points: np.ndarray, *, threshold: float, iterations: int = 256,
                     max_points: int = 4096, seed: int = 0) -> Plane | None:
    """Fit a plane to ``points (N, 3)``, robust to outliers; None if no plane is defined.

    ``iterations`` hypotheses (three points each) are scored by their inlier count (distance <
    ``threshold``) on a subsample of at most ``max_points`` points (drawn with replacement,
    which is as good for counting and much cheaper than a permutation); ties go to the earlier
    hypothesis.  The winner is refit by least squares on its inliers in the subsample.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    n = len(pts)
    if n < 3:
        return None
    rng = np.random.default_rng(seed)
    sample = pts[rng.integers(0, n, size=max_points)] if n > max_points else pts
    tri = rng.integers(0, len(sample), size=(iterations, 3))
    a, b, c = sample[tri[:, 0]], sample[tri[:, 1]], sample[tri[:, 2]]
    normals = np.cross(b - a, c - a)
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-12
    if not ok.any():
        best = _refit(pts)  # every hypothesis degenerate: collinear or repeated points
    else:
        normals = normals[ok] / norms[ok, None]
        offsets = -np.einsum("kd,kd->k", normals, a[ok])
        # (M, K) distances in float32 by broadcasting: a BLAS matmul with an inner dimension
        # of 3 is several times slower, and float32 is ample for a millimetre threshold.
        s32, n32 = sample.astype(np.float32), normals.astype(np.float32)
        dist = s32[:, 0:1] * n32[:, 0] + s32[:, 1:2] * n32[:, 1] + s32[:, 2:3] * n32[:, 2]
        dist += offsets.astype(np.float32)
        inliers = np.abs(dist, out=dist) < threshold
        k = int(np.argmax(inliers.sum(axis=0)))
        best = _refit(sample[inliers[:, k]]) or (normals[k], float(offsets[k]))
    if best is None:
        return None
    normal, offset = best
    if offset < 0:  # orient towards the camera at the origin: distance of origin = offset > 0
        normal, offset = -normal, -offset
    return Plane(normal=np.asarray(normal, dtype=np.float64), offset=float(offset))


def border_mask(shape: tuple[int, int], border: float) -> np.ndarray:
    """``bool (H, W)``: a band of ``border * min(H, W)`` pixels (at least 1) along the edges."""
    h, w = shape
    bw = max(1, int(round(border * min(h, w))))
    band = np.zeros((h, w), dtype=bool)
    band[:bw] = band[-bw:] = True
    band[:, :bw] = band[:, -bw:] = True
    return band


def remove_small_clusters(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """Drop 8-connected components of ``mask`` smaller than ``min_fraction`` x the largest."""
    if min_fraction <= 0 or not mask.any():
        return mask
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= min_fraction * sizes.max()
    keep[0] = False
    return keep[labels]


def remove_background_plane(xyz: np.ndarray, *, threshold: float = 0.005, border: float = 0.05,
                            iterations: int = 256, max_points: int = 4096, seed: int = 0,
                            min_cluster_fraction: float = 0.05
                            ) -> tuple[np.ndarray, Plane | None]:
    """Foreground mask of an organized cloud ``(H, W, 3)`` (see the module docstring).

    Returns ``(keep, plane)``: ``keep`` is ``bool (H, W)``, True for the object points that
    survive; ``plane`` is the fitted background plane, or None when fewer than three points
    define no plane (then only the cluster cleanup runs).  When the border band holds fewer than
    three points the plane is fitted to all points.
    """
    valid = valid_mask(xyz)
    candidates = xyz[valid & border_mask(valid.shape, border)]
    if len(candidates) < 3:
        candidates = xyz[valid]
    plane = fit_plane_ransac(candidates, threshold=threshold, iterations=iterations,
                             max_points=max_points, seed=seed)
    keep = valid
    if plane is not None:
        keep = valid & (plane.signed_distance(xyz) > threshold)
    return remove_small_clusters(keep, min_cluster_fraction), plane
