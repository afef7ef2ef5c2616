"""The sorted tiles' plans and kernel calls (csrc/knn/knn_tiles.h), shared by the kNN op and the
descriptors' self-search.

The general plan sorts queries and points apart along a Morton curve and finds each query's
place among the points. A cloud searched against itself needs one sort: the queries are the
sorted points, each query's walk starts at its own position, and its output row is either its
sorted position (the descriptors, which take the order as their `query_index`) or its point's
own row (knn_points(p, p)).

Float64 searches of 16 < K < 32 nearest (normals' k = 30), squared L2 and unbounded, of a cloud
against itself go through a float32 search of the 32 nearest and an exact float64 rerank
(csrc/knn/knn_rerank.h); the rows the rerank cannot prove right are searched again in float64.
The rows are the float64 search's, bit for bit, either way.
"""
from __future__ import annotations

import math

import torch

from ._launch import C, device_args, dtype_tag, ptr
from ._spatial import gather_points, morton_codes, morton_frame, tile_boxes

TILE, SUPER = 32, 32  # kKnnTile, kKnnSuper
FILTER_M = 32  # kFilterM
FILTER_MODE = 3  # list_mode: the float32 filter at any K < 32 (float64, L2, unbounded)


def outputs(p1, K: int):
    """Empty (dists, idx) of shape (B, P1, K)."""
    B, P1, _ = p1.shape
    return (torch.empty((B, P1, K), dtype=p1.dtype, device=p1.device),
            torch.empty((B, P1, K), dtype=torch.int64, device=p1.device))


def tiles_kernel(dists, idx, p1s, p2s, lengths1, lengths2, order1, order2, boxes, supers, home, K: int, norm: int,
                 list_mode: int, max_dist: float, todo=None) -> None:
    """The sorted tiles' kernel on a plan; order1 None: rows in sorted order; home None: p1s is
    p2s; todo (B, P1) uint8: only those rows."""
    B, P1, _ = p1s.shape
    dev, stream = device_args(p1s)
    C().knn_tiles(ptr(p1s), ptr(p2s), ptr(lengths1), ptr(lengths2), ptr(dists), ptr(idx), ptr(order1),
                  ptr(order2), ptr(boxes), ptr(supers), ptr(home), B, P1, p2s.shape[1], K, boxes.shape[1],
                  supers.shape[1], norm, list_mode, max_dist, dtype_tag(p1s), dev, stream, ptr(todo))


def general_tiles_into(dists, idx, p1, p2, lengths1, lengths2, K: int, norm: int, list_mode: int = 0,
                       max_dist: float = math.inf) -> None:
    """The general plan (all on the inputs' device, no synchronisation) and its kernel; fills
    dists/idx in the queries' own rows and with the points' own indices. `list_mode` (CUDA): 0 by
    size, 1 a thread per query (its list in its output row), 2 a warp per query (K <= 256). A
    finite `max_dist` bounds the search: only the neighbours at distance < max_dist (compared in
    p1's dtype), -1 padded."""
    p1s, p2s, order1, order2, boxes, supers, home = general_plan(p1, p2, lengths1, lengths2)
    tiles_kernel(dists, idx, p1s, p2s, lengths1, lengths2, order1, order2, boxes, supers, home, K, norm, list_mode,
                 max_dist)


def general_plan(p1, p2, lengths1, lengths2):
    """(p1s, p2s, order1, order2, boxes, supers, home): both sides sorted along the points' Morton
    curve, the points' tile and super-tile boxes, and each sorted query's place among the points."""
    frame = morton_frame(p2, lengths2)
    code2, order2 = torch.sort(morton_codes(p2, lengths2, frame), dim=1, stable=True)
    code1, order1 = torch.sort(morton_codes(p1, lengths1, frame), dim=1, stable=True)
    home = torch.searchsorted(code2, code1)
    p1s, p2s = gather_points(p1, order1).contiguous(), gather_points(p2, order2).contiguous()
    boxes, supers = tile_boxes(p2s, lengths2, TILE, SUPER)
    return p1s, p2s, order1, order2, boxes, supers, home


def filter_applies(dtype: torch.dtype, K: int, norm: int, max_dist: float, list_mode: int) -> bool:
    """Whether the float32 filter serves a self-search (FILTER_MODE forces it; ValueError where it
    cannot)."""
    possible = dtype == torch.float64 and norm == 2 and math.isinf(max_dist) and max_dist > 0 and K < FILTER_M
    if list_mode == FILTER_MODE and not possible:
        raise ValueError(f"list_mode {FILTER_MODE} (the float32 filter) takes float64 points, norm 2, K < "
                         f"{FILTER_M} and no bound, got {dtype}, norm {norm}, K = {K}, max_dist = {max_dist}")
    return possible and (list_mode == FILTER_MODE or (list_mode == 0 and K > 16))


def _filtered_into(dists, idx, points, ps, lengths, order, out_rows, lo, boxes, supers, K: int) -> None:
    B, P, _ = ps.shape
    # The float32 copy, moved to the frame's corner: its error bound scales with its extent.
    ps32 = (ps - lo[:, None, :]).to(torch.float32)
    boxes32, supers32 = tile_boxes(ps32, lengths, TILE, SUPER)
    cand_dists, cand_idx = outputs(ps32, FILTER_M)
    tiles_kernel(cand_dists, cand_idx, ps32, ps32, lengths, lengths, None, order, boxes32, supers32, None,
                 FILTER_M, 2, 0, math.inf)
    todo = torch.empty((B, P), dtype=torch.uint8, device=ps.device)
    dev, stream = device_args(ps)
    C().knn_rerank(ptr(points), ptr(ps), ptr(lengths), ptr(cand_dists), ptr(cand_idx), ptr(supers32),
                   supers32.shape[1], ptr(out_rows), ptr(dists), ptr(idx), ptr(todo), B, P, K, dev, stream)
    tiles_kernel(dists, idx, ps, ps, lengths, lengths, out_rows, order, boxes, supers, None, K, 2, 0, math.inf, todo)


def self_tiles_into(dists, idx, points, lengths, K: int, norm: int, max_dist: float, list_mode: int,
                    sorted_rows: bool) -> torch.Tensor:
    """The K nearest of every point of `points` (B, P, 3), contiguous, among its own cloud's, into
    dists / idx (B, P, K): row i is sorted point i's (`sorted_rows`, the descriptors') or point
    i's own (knn_points). Returns the cloud's spatial order (_spatial.spatial_order's on CUDA).
    `list_mode`: KnnTilesParams's, or FILTER_MODE."""
    filtered = filter_applies(points.dtype, K, norm, max_dist, list_mode)
    lo, scale = morton_frame(points, lengths)
    order = torch.sort(morton_codes(points, lengths, (lo, scale)), dim=1, stable=True)[1]
    if not dists.numel():
        return order
    ps = gather_points(points, order).contiguous()
    boxes, supers = tile_boxes(ps, lengths, TILE, SUPER)
    out_rows = None if sorted_rows else order
    if filtered:
        _filtered_into(dists, idx, points, ps, lengths, order, out_rows, lo, boxes, supers, K)
    else:
        tiles_kernel(dists, idx, ps, ps, lengths, lengths, out_rows, order, boxes, supers, None, K, norm,
                     list_mode, max_dist)
    return order
