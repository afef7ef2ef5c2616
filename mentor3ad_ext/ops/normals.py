"""Normal estimation: PCA of k-nearest (or radius-limited hybrid) neighbourhoods.

Not differentiable: the outputs never require grad (the neighbour selection and the
eigenvector's sign are piecewise constant anyway); use the reference for experiments that
need gradients through a covariance.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch

from . import _checks as ck
from ._contract import INDEX, INT64, Contract
from ._library import custom_op
from ._launch import C, device_args, dtype_tag, host_kernels, ptr
from ._spatial import check_organized, pack_organized, spatial_order, unpack_organized
from ._knn_self import _knn_self
from .knn import _knn, _knn_within, _knn_within_idx, _knn_within_idx32, _knn_within_rows32, fits_int32, tiles_pay

OP = "estimate_normals"
OP_ORGANIZED = "estimate_normals_organized"


def _row_stride(idx: torch.Tensor, dists: torch.Tensor):
    """(idx, dists, row stride): the kernels read row r of a (B, P, K) list at r * stride. A view
    whose rows are evenly spaced in one buffer, such as the prefix idx[..., :k] of longer rows,
    is read in place (its stride); anything else is made contiguous (stride K)."""
    B, P, K = idx.shape
    st = idx.stride()
    evenly = K == 0 or (st[2] == 1 and st[1] >= K and (B == 1 or st[0] == P * st[1]))
    if evenly and (dists.numel() == 0 or dists.stride() == st):
        return idx, dists, st[1] if P > 0 else K
    return idx.contiguous(), dists.contiguous(), K


@custom_op("mentor3ad::normals_from_neighbors", mutates_args=())
def _normals(points: torch.Tensor, idx: torch.Tensor, dists: torch.Tensor, query_index: torch.Tensor,
             radius2: float, orient: bool, viewpoint: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    c = Contract("normals_from_neighbors")
    points = c.tensor("points", points, ("B", "P", 3))
    idx = c.tensor("idx", idx, ("B", "P", "K"), INDEX, contiguous=False)  # rows read at their stride
    dists = c.tensor("dists", dists, ("B", "P", "K"), (points.dtype,), empty_ok=True, contiguous=False)
    query_index = c.tensor("query_index", query_index, ("B", "P"), INT64, empty_ok=True)
    viewpoint = c.floats("viewpoint", viewpoint, 3)
    c.host_int32("idx", idx, host_kernels(points))
    B, P, _ = points.shape
    normals = torch.empty((B, P, 3), dtype=points.dtype, device=points.device)
    curvature = torch.empty((B, P), dtype=points.dtype, device=points.device)
    if normals.numel():
        idx, dists, stride = _row_stride(idx, dists)
        dev, stream = device_args(points)
        C().normals(ptr(points), ptr(idx), ptr(dists), ptr(query_index), 0, ptr(normals), ptr(curvature),
                    B, P, idx.shape[2], float(radius2), bool(orient), float(viewpoint[0]),
                    float(viewpoint[1]), float(viewpoint[2]), dtype_tag(points), dev, stream,
                    32 if idx.dtype == torch.int32 else 64, stride)
    return normals, curvature


@_normals.register_fake
def _(points, idx, dists, query_index, radius2, orient, viewpoint):
    B, P, _ = points.shape
    return points.new_empty((B, P, 3)), points.new_empty((B, P))


@custom_op("mentor3ad::normals_search", mutates_args=(), device_types="cpu")
def _normals_search(points: torch.Tensor, lengths: torch.Tensor, k: int, radius2: float, orient: bool,
                    viewpoint: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU: the kernel searches each point's k nearest itself (same neighbours, same bits as
    knn + normals_from_neighbors) and never materialises the (B, P, k) lists."""
    c = Contract("normals_search")
    points = c.tensor("points", points, ("B", "P", 3), cpu=True)
    lengths = c.tensor("lengths", lengths, ("B",), INT64)
    k, viewpoint = c.integer("k", k, 1), c.floats("viewpoint", viewpoint, 3)
    B, P, _ = points.shape
    normals = torch.empty((B, P, 3), dtype=points.dtype)
    curvature = torch.empty((B, P), dtype=points.dtype)
    if normals.numel():
        # Device -1: this op is served by the CPU kernels only (also under the CUDA emulator).
        C().normals(ptr(points), 0, 0, 0, ptr(lengths), ptr(normals), ptr(curvature), B, P, int(k),
                    float(radius2), bool(orient), float(viewpoint[0]), float(viewpoint[1]),
                    float(viewpoint[2]), dtype_tag(points), -1, 0, 64, 0)
    return normals, curvature


@_normals_search.register_fake
def _(points, lengths, k, radius2, orient, viewpoint):
    B, P, _ = points.shape
    return points.new_empty((B, P, 3)), points.new_empty((B, P))


def check_radius(op: str, name: str, radius) -> Optional[float]:
    if radius is None:
        return None
    if isinstance(radius, torch.Tensor) and radius.numel() == 1:
        radius = float(radius)
    if isinstance(radius, bool) or not isinstance(radius, (int, float)):
        raise TypeError(f"{op}: {name} must be a float or None, got {type(radius).__name__}")
    if not (radius > 0) or math.isinf(radius):
        raise ValueError(f"{op}: {name} must be a finite number > 0 or None, got {radius}")
    return float(radius)


def _three_numbers(op: str, name: str, v) -> list[float]:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().tolist()
    try:
        out = [float(x) for x in v]
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be a sequence of 3 numbers, got {v!r}") from None
    if len(out) != 3 or not all(math.isfinite(x) for x in out):
        raise ValueError(f"{op}: {name} must be 3 finite numbers, got {v!r}")
    return out


def _check_orient(op: str, orient, viewpoint) -> tuple[bool, list[float]]:
    """(orient towards the viewpoint in the kernel, viewpoint); orient "direction" is applied
    after the kernel (_align_to)."""
    if orient not in ("viewpoint", "direction", None):
        raise ValueError(f"{op}: orient must be 'viewpoint', 'direction' or None, got {orient!r}")
    return orient == "viewpoint", _three_numbers(op, "viewpoint", viewpoint)


def _check_direction(op: str, orient, direction) -> Optional[list[float]]:
    if orient != "direction":
        return None
    d = _three_numbers(op, "direction", direction)
    if not any(d):
        raise ValueError(f"{op}: direction must not be the zero vector, got {direction!r}")
    return d


def _align_to(normals: torch.Tensor, direction: Optional[list[float]]) -> torch.Tensor:
    """Flips the normals n with dot(n, direction) < 0 (open3d's
    `orient_normals_to_align_with_direction`; zero normals stay zero). The dot product in
    float64, in a fixed order of elementwise operations: the same signs on every device."""
    if direction is None:
        return normals
    n = normals.double()
    dot = (n[..., 0] * direction[0] + n[..., 1] * direction[1]) + n[..., 2] * direction[2]
    return torch.where((dot < 0)[..., None], -normals, normals)


def neighbourhoods(points: torch.Tensor, lengths: torch.Tensor, K: int, radius2: float = -1.0,
                   with_dists: bool = True, index32: bool = False, packed: bool = False):
    """(idx, dists, query_index): the K nearest neighbours of every point, rows in spatial order;
    with radius2 >= 0 only those at squared distance < radius2, the prefix the kernels read: the
    search stops there (`_knn_within`). Without `with_dists`, dists may come back empty (always
    with a radius, on the CPU also without: the search then writes no distances; the -1 padding
    marks the end of each row, and kernels take radius2 = -1). `index32` (without dists): int32
    indices where the CPU kernels serve (for kernels that take them: FPFH's). `packed` (without
    dists): where the CPU kernels serve, idx is instead the tuple (idx, row_start, row_count) of
    packed int32 rows (`_knn_within_rows32`, FPFH's own search). On CUDA, where the sorted tiles
    serve, one `_knn_self` call (one Morton sort for the order and the plan)."""
    if not host_kernels(points) and tiles_pay(*points.shape[:2], points.shape[1], K):
        # One sort for the queries' order, the points' and the plan's (_knn_self).
        dists, idx, order = _knn_self(points, lengths, K, radius2 if radius2 >= 0 else math.inf, 0)
        # Not kept for callers that read none: FPFH's kernels would otherwise run beside its (P,
        # max_nn) distances (100k x 100: 40 MB in float32, 80 in float64) for nothing.
        return idx, (dists if with_dists else dists.new_empty(0)), order
    order = spatial_order(points, lengths)
    queries = points.gather(1, order[..., None].expand(-1, -1, 3))
    if not with_dists and (radius2 >= 0 or host_kernels(points)):
        bound = radius2 if radius2 >= 0 else math.inf  # unbounded: the same rows as _knn's
        host32 = host_kernels(points) and fits_int32(points, K)
        search = (_knn_within_rows32 if packed and host32 else
                  _knn_within_idx32 if index32 and host32 else _knn_within_idx)
        return search(queries, points, lengths, lengths, K, bound), points.new_empty(0), order
    if radius2 >= 0:
        dists, idx = _knn_within(queries, points, lengths, lengths, K, radius2)
    else:
        dists, idx = _knn(queries, points, lengths, lengths, K, 2)
    return idx, dists, order


def _radius2(radius: Optional[float]) -> float:
    return -1.0 if radius is None else radius * radius


def _estimate(points, lengths, k, radius, orient, viewpoint):
    if host_kernels(points):
        return _normals_search(points.contiguous(), lengths.contiguous(), k, _radius2(radius), orient, viewpoint)
    idx, dists, order = neighbourhoods(points, lengths, k, _radius2(radius))
    return _normals(points, idx, dists, order, _radius2(radius), orient, viewpoint)


def estimate_normals(
    points: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    k: int = 30,
    radius: Optional[float] = None,
    orient: Optional[str] = "viewpoint",
    viewpoint: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    direction: Sequence[float] = (0.0, 0.0, 1.0),
    return_curvature: bool = False,
) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Unit normals by PCA of each point's neighbourhood (open3d's `estimate_normals`).

    Args:
        points: (B, P, 3) float32/float64 (half computed in float32), padded clouds.
        lengths: optional (B,) int64 valid sizes; padding points get zero normals.
        k: neighbours per point, the point itself included (open3d `max_nn` / `knn`; past the
            cloud size: all).
        radius: None for the k nearest (KDTreeSearchParamKNN); a float for the up-to-k nearest
            with squared distance < radius**2 (KDTreeSearchParamHybrid).
        orient: "viewpoint" flips each normal n at p so that dot(n, viewpoint - p) >= 0
            (open3d `orient_normals_towards_camera_location`); "direction" so that
            dot(n, direction) >= 0 (open3d `orient_normals_to_align_with_direction`); None keeps
            the solver's sign.
        viewpoint: the camera position (the origin for MVTec 3D-AD / Eyecandies clouds).
        direction: the reference direction of orient="direction" (open3d's default +z).
        return_curvature: also return the surface variation l0 / (l0 + l1 + l2) in [0, 1/3].

    Returns:
        normals (B, P, 3) in the computation dtype, and curvature (B, P) when asked.

    The covariance is accumulated in float64 around the neighbourhood mean and solved in
    closed form (robust for planes and lines). Defined results, never NaN: fewer than 3
    neighbours, coincident points or collinear points (middle eigenvalue <= 1e-7 x the largest)
    give the zero normal and curvature 0 (open3d returns an arbitrary axis there).
    Not differentiable. CPU and CUDA agree up to last-ulp differences of acos/cos.
    """
    k = ck.check_positive_int(OP, "k", k)
    radius = check_radius(OP, "radius", radius)
    do_orient, vp = _check_orient(OP, orient, viewpoint)
    d = _check_direction(OP, orient, direction)
    ck.check_points(OP, "points", points, allow_half=True, dim=3)
    lengths = ck.check_lengths(OP, "lengths", lengths, points.shape[0], points.shape[1], points.device)
    ck.check_finite(OP, "points", points)
    pts = ck.as_float_input(points.detach())
    normals, curvature = _estimate(pts, lengths, ck.at_most_points(k, pts.shape[1]), radius, do_orient, vp)
    normals = _align_to(normals, d)
    return (normals, curvature) if return_curvature else normals


def estimate_normals_organized(
    xyz: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    k: int = 30,
    radius: Optional[float] = None,
    orient: Optional[str] = "viewpoint",
    viewpoint: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    direction: Sequence[float] = (0.0, 0.0, 1.0),
    return_curvature: bool = False,
) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """`estimate_normals` on organized clouds: xyz (B, H, W, 3) -> normals (B, H, W, 3).

    valid: optional bool (B, H, W); by default a pixel is valid when its coordinates are finite
    and not all zero (holes are (0, 0, 0) in MVTec 3D-AD). Neighbours are searched in 3D among
    the valid pixels of the same image (not in a pixel window), so results equal
    `estimate_normals` on the valid points. Invalid pixels get zero normals (and curvature).
    """
    k = ck.check_positive_int(OP_ORGANIZED, "k", k)
    radius = check_radius(OP_ORGANIZED, "radius", radius)
    do_orient, vp = _check_orient(OP_ORGANIZED, orient, viewpoint)
    d = _check_direction(OP_ORGANIZED, orient, direction)
    xyz, valid = check_organized(OP_ORGANIZED, xyz, valid)
    B, H, W, _ = xyz.shape
    points, lengths, pixel_of_row = pack_organized(OP_ORGANIZED, xyz.detach(), valid)
    normals, curvature = _estimate(points, lengths, ck.at_most_points(k, H * W), radius, do_orient, vp)
    normals = unpack_organized(_align_to(normals, d), pixel_of_row, H, W)
    if not return_curvature:
        return normals
    return normals, unpack_organized(curvature[..., None], pixel_of_row, H, W)[..., 0]
