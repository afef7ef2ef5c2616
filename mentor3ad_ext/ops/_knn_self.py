"""The K nearest of every point of a cloud among its own points, rows in the cloud's spatial
order: the neighbourhood search of `estimate_normals` and `fpfh` on CUDA.

The general sorted-tiles plan (knn.py) sorts queries and points apart and finds each query's
place among the points; for a cloud searched against itself both are the same sort, and the
queries' own spatial order (`spatial_order`, which the descriptor kernels take as
`query_index`) is a third copy of it. Here one Morton sort serves all three: the rows come out
in sorted order, each query's walk starts at its own position.

Float64 searches of 16 < K < 32 nearest (normals' k = 30), unbounded, go through a float32
search of the 32 nearest and an exact float64 rerank (csrc/knn/knn_rerank.h); the rows the
rerank cannot prove right are searched again in float64. The rows are the float64 search's,
bit for bit, either way.
"""
from __future__ import annotations

import math

import torch

from ._contract import INT64, Contract
from ._launch import C, device_args, ptr
from ._library import custom_op
from ._spatial import gather_points, morton_codes, morton_frame, tile_boxes
from .knn import _TILE, _SUPER, _outputs, tiles_kernel

FILTER_M = 32  # kFilterM
LIST_MODES = (0, 1, 2, 3)  # KnnTilesParams::list_mode, and 3: the float32 filter at any K < 32 (float64)


def filter_applies(dtype: torch.dtype, K: int, max_dist: float, list_mode: int) -> bool:
    """Whether the float32 filter serves a search (list_mode 3 forces it; ValueError where it
    cannot)."""
    possible = dtype == torch.float64 and math.isinf(max_dist) and max_dist > 0 and K < FILTER_M
    if list_mode == 3 and not possible:
        raise ValueError(f"mentor3ad::knn_self: list_mode 3 (the float32 filter) takes float64 points, K < "
                         f"{FILTER_M} and no bound, got {dtype}, K = {K}, max_dist = {max_dist}")
    return possible and (list_mode == 3 or (list_mode == 0 and K > 16))


def _filtered_into(dists, idx, points, ps, lengths, order, lo, boxes, supers, K: int) -> None:
    B, P, _ = ps.shape
    # The float32 copy, moved to the frame's corner: its error bound scales with its extent.
    ps32 = (ps - lo[:, None, :]).to(torch.float32)
    boxes32, supers32 = tile_boxes(ps32, lengths, _TILE, _SUPER)
    cand_dists = torch.empty((B, P, FILTER_M), dtype=torch.float32, device=ps.device)
    cand_idx = torch.empty((B, P, FILTER_M), dtype=torch.int64, device=ps.device)
    tiles_kernel(cand_dists, cand_idx, ps32, ps32, lengths, lengths, None, order, boxes32, supers32, None,
                 FILTER_M, 2, 0, math.inf)
    todo = torch.empty((B, P), dtype=torch.uint8, device=ps.device)
    dev, stream = device_args(ps)
    C().knn_rerank(ptr(points), ptr(ps), ptr(lengths), ptr(cand_dists), ptr(cand_idx), ptr(supers32),
                   supers32.shape[1], ptr(dists), ptr(idx), ptr(todo), B, P, K, dev, stream)
    tiles_kernel(dists, idx, ps, ps, lengths, lengths, None, order, boxes, supers, None, K, 2, 0, math.inf, todo)


@custom_op("mentor3ad::knn_self", mutates_args=())
def _knn_self(points: torch.Tensor, lengths: torch.Tensor, K: int, max_dist: float,
              list_mode: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dists, idx, order): row i holds the K nearest (squared L2, the cloud's own indices, -1
    padded) of point order[i] of its cloud, where `order` is the cloud's spatial order
    (_spatial.spatial_order); with a finite max_dist only those at distance < max_dist (compared
    in the points' dtype). `list_mode`: KnnTilesParams's (0 by size), or 3 to force the float32
    filter. Runs the sorted tiles on any device (their CPU twin on the CPU)."""
    c = Contract("knn_self")
    points = c.tensor("points", points, ("B", "P", 3))
    lengths = c.tensor("lengths", lengths, ("B",), INT64)
    K = c.integer("K", K)
    list_mode = c.choice("list_mode", list_mode, LIST_MODES)
    max_dist = float(max_dist)
    filtered = filter_applies(points.dtype, K, max_dist, list_mode)
    lo, scale = morton_frame(points, lengths)
    order = torch.sort(morton_codes(points, lengths, (lo, scale)), dim=1, stable=True)[1]
    ps = gather_points(points, order).contiguous()
    dists, idx = _outputs(ps, K)
    if dists.numel():
        boxes, supers = tile_boxes(ps, lengths, _TILE, _SUPER)
        if filtered:
            _filtered_into(dists, idx, points, ps, lengths, order, lo, boxes, supers, K)
        else:
            tiles_kernel(dists, idx, ps, ps, lengths, lengths, None, order, boxes, supers, None, K, 2,
                         list_mode, max_dist)
    return dists, idx, order


@_knn_self.register_fake
def _(points, lengths, K, max_dist, list_mode):
    d, i = _outputs(points, K)
    return d, i, points.new_empty(points.shape[:2], dtype=torch.int64)
