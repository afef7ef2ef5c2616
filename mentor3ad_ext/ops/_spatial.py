"""Spatial helpers: Morton codes and orders, the tile boxes of the CUDA kNN's sorted-tiles plan
(csrc/knn/tiles_plan.h), and organized-cloud packing for the descriptor ops.

Spatial order: the kNN search and the per-point kernels run their queries in Morton (Z-curve)
order of the points, so that consecutive queries touch the same KD-tree leaves and neighbour
rows (about 1.5x faster kNN on a randomly ordered cloud). The kernels take the permutation
(`query_index`) and write every result to its point's own row, so the order never shows in the
output.

Organized clouds (B, H, W, 3) are packed into padded clouds: the valid pixels of each image in
row-major order, then the invalid ones as padding (`lengths` = valid count), and unpacked by
scattering the rows back to their pixels (padding rows are zero by the kernels' contract).
"""
from __future__ import annotations

from typing import Optional

import torch

from . import _checks as ck
from ._contract import INT64, Contract
from ._library import custom_op
from ._launch import C, device_args, dtype_tag, host_kernels, ptr


def morton_frame(points: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo (B, 3), cells per unit (B,)): the grid the Morton codes of a cloud use: the lower
    corner of its valid points (+max when it has none), 1023 cells over their longest side; NaN
    coordinates are left out. One kernel (csrc/knn/tiles_plan.h): the eleven tensor ops it
    replaced cost each CUDA search as many launches."""
    return _morton_frame(points.contiguous(), lengths.contiguous())


@custom_op("mentor3ad::morton_frame", mutates_args=())
def _morton_frame(points: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c = Contract("morton_frame")
    points = c.tensor("points", points, ("B", "P", 3))
    lengths = c.tensor("lengths", lengths, ("B",), INT64)
    B, P, _ = points.shape
    lo = torch.empty((B, 3), dtype=points.dtype, device=points.device)
    scale = torch.empty((B,), dtype=points.dtype, device=points.device)
    if B:
        dev, stream = device_args(points)
        C().morton_frame(ptr(points), ptr(lengths), ptr(lo), ptr(scale), B, P, dtype_tag(points), dev, stream)
    return lo, scale


@_morton_frame.register_fake
def _(points, lengths):
    return points.new_empty((points.shape[0], 3)), points.new_empty((points.shape[0],))


def morton_codes(points: torch.Tensor, lengths: torch.Tensor, frame) -> torch.Tensor:
    """(B, P) int64 Morton codes of the valid points in `frame` (points outside it clamp to its
    faces, NaN to cell 0); padding points get 2^40 + their index, after every valid code, in
    index order. One kernel (csrc/knn/tiles_plan.h)."""
    lo, scale = frame
    return _morton_codes(points.contiguous(), lengths.contiguous(), lo, scale)


# A custom op, so that torch.compile keeps the ops that order their queries (fpfh, normals on
# CUDA) in one graph instead of breaking at the raw kernel call.
@custom_op("mentor3ad::morton_codes", mutates_args=())
def _morton_codes(points: torch.Tensor, lengths: torch.Tensor, lo: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    c = Contract("morton_codes")
    points = c.tensor("points", points, ("B", "P", 3))
    lengths = c.tensor("lengths", lengths, ("B",), INT64)
    lo = c.tensor("lo", lo, ("B", 3), (points.dtype,))
    scale = c.tensor("scale", scale, ("B",), (points.dtype,))
    B, P, _ = points.shape
    codes = torch.empty((B, P), dtype=torch.int64, device=points.device)
    if codes.numel():
        dev, stream = device_args(points)
        C().morton_codes(ptr(points), ptr(lengths), ptr(lo), ptr(scale), ptr(codes), B, P, dtype_tag(points),
                         dev, stream)
    return codes


@_morton_codes.register_fake
def _(points, lengths, lo, scale):
    return points.new_empty(points.shape[:2], dtype=torch.int64)


def spatial_order(points: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, P) int64 permutation per cloud: valid points in Morton order, then the padding.

    Deterministic (stable sort; equal codes keep index order); runs on the points' device
    without host synchronisation.
    """
    B, P, _ = points.shape
    if P == 0:
        return torch.arange(P, device=points.device).expand(B, 0).clone()
    if host_kernels(points):
        return _morton_order(points.contiguous(), lengths.contiguous())
    code = morton_codes(points, lengths, morton_frame(points, lengths))
    return torch.argsort(code, dim=1, stable=True)


# The CPU's spatial_order in one C++ call (csrc/knn/morton_order.h): the frame reductions and
# torch's stable argsort took ~10 ms of FPFH's ~70 ms neighbour search at 100k points (2 cores).
@custom_op("mentor3ad::morton_order", mutates_args=(), device_types="cpu")
def _morton_order(points: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    c = Contract("morton_order")
    points = c.tensor("points", points, ("B", "P", 3), cpu=True)
    lengths = c.tensor("lengths", lengths, ("B",), INT64)
    B, P, _ = points.shape
    order = torch.empty((B, P), dtype=torch.int64)
    if order.numel():
        C().morton_order(ptr(points), ptr(lengths), B, P, dtype_tag(points), ptr(order))
    return order


@_morton_order.register_fake
def _(points, lengths):
    return points.new_empty(points.shape[:2], dtype=torch.int64)


def gather_points(points: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    return points.gather(1, order[..., None].expand(-1, -1, points.shape[2]))


def tile_boxes(points: torch.Tensor, lengths: torch.Tensor, tile: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (lo xyz, hi xyz) of each run of `tile` consecutive valid points, (B, ceil(P / tile), 6),
    and of each run of `group` tiles, (B, ceil(tiles / group), 6); a box without valid points has
    lo > hi. `tile` and `group` must be kKnnTile and kKnnSuper of csrc/knn/knn_tiles.h."""
    B, P, _ = points.shape
    points, lengths = points.contiguous(), lengths.contiguous()
    T = -(-P // tile)
    S = -(-T // group)
    boxes = torch.empty((B, T, 6), dtype=points.dtype, device=points.device)
    supers = torch.empty((B, S, 6), dtype=points.dtype, device=points.device)
    if boxes.numel():
        dev, stream = device_args(points)
        C().tile_boxes(ptr(points), ptr(lengths), ptr(boxes), ptr(supers), B, P, T, S, dtype_tag(points), dev, stream)
    return boxes, supers


def check_organized(op: str, xyz, valid) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    ck.check_tensor(op, "xyz", xyz, ndim=4, dtypes=ck.FLOAT_DTYPES + ck.HALF_DTYPES, shape_hint="(B, H, W, 3)")
    if xyz.shape[3] != 3:
        raise ValueError(f"{op}: xyz must have shape (B, H, W, 3) (an organized cloud, channels last), "
                         f"got shape {ck.shape_str(xyz)}")
    if valid is not None:
        ck.check_tensor(op, "valid", valid, ndim=3, dtypes=(torch.bool,), shape_hint="(B, H, W)")
        if valid.shape != xyz.shape[:3]:
            raise ValueError(f"{op}: valid must have shape {tuple(xyz.shape[:3])} (one flag per pixel of xyz), "
                             f"got {ck.shape_str(valid)}")
        ck.check_same_device(op, xyz=xyz, valid=valid)
    return xyz, valid


def pack_organized(op: str, xyz: torch.Tensor, valid: Optional[torch.Tensor]):
    """(points (B, H*W, 3), lengths (B,), pixel_of_row (B, H*W)) for a checked organized cloud.

    valid None: a pixel is valid when its coordinates are finite and not all zero (the
    MVTec 3D-AD convention for holes). With an explicit mask, invalid pixels may hold anything
    (NaN included); valid ones must be finite.
    """
    B, H, W, _ = xyz.shape
    flat = ck.as_float_input(xyz).reshape(B, H * W, 3)
    if valid is None:
        v = torch.isfinite(flat).all(-1) & (flat != 0).any(-1)
    else:
        v = valid.reshape(B, H * W)
    flat = torch.where(v[..., None], flat, flat.new_zeros(()))
    ck.check_finite(op, "xyz (at valid pixels)", flat)
    pixel_of_row = torch.argsort((~v).to(torch.uint8), dim=1, stable=True)
    lengths = v.sum(1, dtype=torch.int64)
    points = flat.gather(1, pixel_of_row[..., None].expand(-1, -1, 3))
    return points, lengths, pixel_of_row


def unpack_organized(rows: torch.Tensor, pixel_of_row: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, H*W, C) per-row values -> (B, H, W, C) per pixel (padding rows are zero)."""
    B, N, C = rows.shape
    out = torch.zeros_like(rows)
    out.scatter_(1, pixel_of_row[..., None].expand(-1, -1, C), rows)
    return out.reshape(B, H, W, C)
