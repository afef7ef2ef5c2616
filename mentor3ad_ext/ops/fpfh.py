"""Fast Point Feature Histograms with open3d's definition (`compute_fpfh_feature`).

Not differentiable: histogram binning is piecewise constant; outputs never require grad.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from . import _checks as ck
from ._contract import INDEX, INT64, Contract
from ._library import custom_op
from ._launch import C, device_args, dtype_tag, host_kernels, ptr, workspace
from ._spatial import check_organized, pack_organized, unpack_organized
from .normals import _check_orient, _estimate, _normals, _radius2, check_radius, neighbourhoods

OP = "fpfh"
OP_ORGANIZED = "fpfh_organized"
FPFH_DIM = 33


def _contract(op: str, points, normals, query_index):
    """The FPFH ops' contract (_contract.py) on the tensors both take."""
    c = Contract(op)
    points = c.tensor("points", points, ("B", "P", 3))
    normals = c.tensor("normals", normals, ("B", "P", 3), (points.dtype,))
    return c, points, normals, c.tensor("query_index", query_index, ("B", "P"), INT64, empty_ok=True)


def _run(points, normals, idx, dists, query_index, K: int, radius2: float, rows=None) -> torch.Tensor:
    B, P, _ = points.shape
    out = torch.empty((B, P, FPFH_DIM), dtype=points.dtype, device=points.device)
    if out.numel():
        ws = workspace(C().fpfh_workspace_bytes(B, P), points)
        dev, stream = device_args(points)
        row_start, row_count = rows if rows is not None else (None, None)
        C().fpfh(ptr(points), ptr(normals), ptr(idx), ptr(dists), ptr(query_index), ptr(ws), ptr(out),
                 B, P, K, float(radius2), dtype_tag(points), dev, stream,
                 32 if idx.dtype == torch.int32 else 64, ptr(row_start), ptr(row_count))
    return out


@custom_op("mentor3ad::fpfh_from_neighbors", mutates_args=())
def _fpfh(points: torch.Tensor, normals: torch.Tensor, idx: torch.Tensor, dists: torch.Tensor,
          query_index: torch.Tensor, radius2: float) -> torch.Tensor:
    c, points, normals, query_index = _contract("fpfh_from_neighbors", points, normals, query_index)
    idx = c.tensor("idx", idx, ("B", "P", "K"), INDEX)
    dists = c.tensor("dists", dists, ("B", "P", "K"), (points.dtype,), empty_ok=True)
    c.host_int32("idx", idx, host_kernels(points))
    return _run(points, normals, idx, dists, query_index, idx.shape[2], radius2)


@_fpfh.register_fake
def _(points, normals, idx, dists, query_index, radius2):
    B, P, _ = points.shape
    return points.new_empty((B, P, FPFH_DIM))


@custom_op("mentor3ad::fpfh_from_rows", mutates_args=(), device_types="cpu")
def _fpfh_rows(points: torch.Tensor, normals: torch.Tensor, idx: torch.Tensor, row_start: torch.Tensor,
               row_count: torch.Tensor, query_index: torch.Tensor, K: int) -> torch.Tensor:
    """`_fpfh` over packed rows (`knn_within_rows32`: idx (B * P * K,) int32, row_start (B, P)
    int64, row_count (B, P) int32, each row ending at the radius). CPU only. The kernel refuses
    rows outside idx or longer than K (check_packed_rows)."""
    c, points, normals, query_index = _contract("fpfh_from_rows", points, normals, query_index)
    B, P, _ = points.shape
    K = c.integer("K", K)
    idx = c.tensor("idx", idx, (B * P * K,), (torch.int32,))
    row_start = c.tensor("row_start", row_start, ("B", "P"), INT64)
    row_count = c.tensor("row_count", row_count, ("B", "P"), (torch.int32,))
    return _run(points, normals, idx, points.new_empty(0), query_index, K, -1.0, (row_start, row_count))


@_fpfh_rows.register_fake
def _(points, normals, idx, row_start, row_count, query_index, K):
    B, P, _ = points.shape
    return points.new_empty((B, P, FPFH_DIM))


def _compute(points, normals, lengths, radius, max_nn):
    # The search's rows end at the radius, so the kernels need no distances (radius2 -1). On the
    # CPU they come packed (int32, no padding: about half the padded list's memory).
    idx, dists, order = neighbourhoods(points, lengths, max_nn, _radius2(radius), with_dists=False, packed=True)
    if isinstance(idx, tuple):  # packed rows: (idx, row_start, row_count)
        return _fpfh_rows(points, normals, *idx, order, max_nn)
    return _fpfh(points, normals, idx, dists, order, -1.0)


def fpfh(
    points: torch.Tensor,
    normals: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    radius: Optional[float] = None,
    max_nn: int = 100,
) -> torch.Tensor:
    """33-bin FPFH descriptors of every point, as open3d's `compute_fpfh_feature`.

    Args:
        points: (B, P, 3) float32/float64 (half computed in float32), padded clouds.
        normals: (B, P, 3) unit (or zero) normals, e.g. from `estimate_normals`.
        lengths: optional (B,) int64 valid sizes; padding points get zero histograms.
        radius: neighbourhood of the up-to-max_nn nearest points with squared distance
            < radius**2 (open3d KDTreeSearchParamHybrid(radius, max_nn)); None: the max_nn
            nearest (KDTreeSearchParamKNN(max_nn)).
        max_nn: neighbours per point, the point itself included (past the cloud size: all).

    Returns:
        (B, P, 33) in the computation dtype: three 11-bin blocks (the angle alpha = atan2 in
        [-pi, pi], then phi = v.n in [-1, 1], then theta = u.d/|d| in [-1, 1]); each block sums
        to 200 at a point with neighbours (100 from its own SPFH, 100 from the 1/d^2-weighted
        neighbour SPFHs), to 100 when all neighbours coincide with it. Points with no neighbour
        but themselves, and padding points, get zeros. Never NaN.

    Agrees with open3d (0.17+) to ~1e-9 relative in float64 given the same neighbours; a pair
    can fall in the adjacent bin when its angle is within rounding of a bin edge, and equal
    distances at the max_nn cut-off may select different neighbours. CPU and CUDA agree up to
    atan2's last ulp. Not differentiable.
    """
    max_nn = ck.check_positive_int(OP, "max_nn", max_nn)
    radius = check_radius(OP, "radius", radius)
    ck.check_points(OP, "points", points, allow_half=True, dim=3)
    ck.check_points(OP, "normals", normals, allow_half=True, dim=3)
    ck.check_same_device(OP, points=points, normals=normals)
    if normals.shape != points.shape:
        raise ValueError(f"{OP}: normals must have the shape of points {ck.shape_str(points)}, "
                         f"got {ck.shape_str(normals)}")
    lengths = ck.check_lengths(OP, "lengths", lengths, points.shape[0], points.shape[1], points.device)
    ck.check_finite(OP, "points", points)
    ck.check_finite(OP, "normals", normals)
    pts, nrm = ck.as_float_input(points.detach()), ck.as_float_input(normals.detach())
    if pts.dtype != nrm.dtype:  # mixed float32/float64: compute in float64
        pts, nrm = pts.double(), nrm.double()
    return _compute(pts, nrm, lengths, radius, ck.at_most_points(max_nn, pts.shape[1]))


def fpfh_organized(
    xyz: torch.Tensor,
    normals: Optional[torch.Tensor] = None,
    valid: Optional[torch.Tensor] = None,
    radius: Optional[float] = None,
    max_nn: int = 100,
    *,
    normals_k: int = 30,
    normals_radius: Optional[float] = None,
    viewpoint: Sequence[float] = (0.0, 0.0, 0.0),
) -> torch.Tensor:
    """`fpfh` on organized clouds: xyz (B, H, W, 3) -> (B, H, W, 33), zeros at invalid pixels.

    normals: optional (B, H, W, 3); by default estimated with `estimate_normals` on the valid
    pixels (normals_k, normals_radius, oriented towards `viewpoint`). valid: optional bool
    (B, H, W); by default pixels with finite, not all-zero coordinates. Neighbours are searched
    in 3D among the valid pixels of the same image, so results equal `fpfh` on the valid points.
    """
    max_nn = ck.check_positive_int(OP_ORGANIZED, "max_nn", max_nn)
    radius = check_radius(OP_ORGANIZED, "radius", radius)
    normals_k = ck.check_positive_int(OP_ORGANIZED, "normals_k", normals_k)
    normals_radius = check_radius(OP_ORGANIZED, "normals_radius", normals_radius)
    _, vp = _check_orient(OP_ORGANIZED, "viewpoint", viewpoint)
    xyz, valid = check_organized(OP_ORGANIZED, xyz, valid)
    B, H, W, _ = xyz.shape
    points, lengths, pixel_of_row = pack_organized(OP_ORGANIZED, xyz.detach(), valid)
    max_nn, normals_k = ck.at_most_points(max_nn, H * W), ck.at_most_points(normals_k, H * W)
    if normals is None and radius is None and normals_k <= max_nn:
        # One search serves both: the normals' k nearest are the prefix of FPFH's max_nn nearest
        # (the lists are exact, ties by index), so the bits are those of two searches; the
        # weight-free 3D extractor (FPFHExtractor, 4 x 224^2 on 2 cores) took ~300 instead of ~325 ms.
        # Distances only for a normals radius (FPFH reads none here), else int32 indices where the
        # CPU kernels serve; the normals read the prefix of each row in place.
        with_dists = normals_radius is not None
        idx, dists, order = neighbourhoods(points, lengths, max_nn, with_dists=with_dists, index32=not with_dists)
        nd = dists[..., :normals_k] if dists.numel() else dists
        nrm, _ = _normals(points, idx[..., :normals_k], nd, order, _radius2(normals_radius), True, vp)
        return unpack_organized(_fpfh(points, nrm, idx, dists, order, -1.0), pixel_of_row, H, W)
    if normals is None:
        nrm, _ = _estimate(points, lengths, normals_k, normals_radius, True, vp)
    else:
        ck.check_tensor(OP_ORGANIZED, "normals", normals, ndim=4, dtypes=ck.FLOAT_DTYPES + ck.HALF_DTYPES,
                        shape_hint="(B, H, W, 3)")
        if normals.shape != xyz.shape:
            raise ValueError(f"{OP_ORGANIZED}: normals must have the shape of xyz {ck.shape_str(xyz)}, "
                             f"got {ck.shape_str(normals)}")
        ck.check_same_device(OP_ORGANIZED, xyz=xyz, normals=normals)
        flat = ck.as_float_input(normals.detach()).reshape(B, H * W, 3)
        nrm = flat.gather(1, pixel_of_row[..., None].expand(-1, -1, 3))
        valid_rows = torch.arange(H * W, device=xyz.device)[None, :] < lengths[:, None]
        nrm = torch.where(valid_rows[..., None], nrm, nrm.new_zeros(()))
        ck.check_finite(OP_ORGANIZED, "normals (at valid pixels)", nrm)
        if nrm.dtype != points.dtype:
            points, nrm = points.double(), nrm.double()
    out = _compute(points, nrm, lengths, radius, max_nn)
    return unpack_organized(out, pixel_of_row, H, W)
