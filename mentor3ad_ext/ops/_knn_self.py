"""The K nearest of every point of a cloud among its own points, rows in the cloud's spatial
order: the neighbourhood search of `estimate_normals` and `fpfh` on CUDA (the self plan of
ops/_tiles.py: one Morton sort for the queries' order, which the descriptor kernels take as
`query_index`, the points' and the plan's)."""
from __future__ import annotations

import torch

from ._contract import INT64, Contract
from ._library import custom_op
from ._tiles import FILTER_MODE, outputs, self_tiles_into

LIST_MODES = (0, 1, 2, FILTER_MODE)  # KnnTilesParams::list_mode, and the float32 filter


@custom_op("mentor3ad::knn_self", mutates_args=())
def _knn_self(points: torch.Tensor, lengths: torch.Tensor, K: int, max_dist: float,
              list_mode: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dists, idx, order): row i holds the K nearest (squared L2, the cloud's own indices, -1
    padded) of point order[i] of its cloud, where `order` is the cloud's spatial order
    (_spatial.spatial_order); with a finite max_dist only those at distance < max_dist (compared
    in the points' dtype). `list_mode`: KnnTilesParams's (0 by size), or FILTER_MODE to force the
    float32 filter. Runs the sorted tiles on any device (their CPU twin on the CPU)."""
    c = Contract("knn_self")
    points = c.tensor("points", points, ("B", "P", 3))
    lengths = c.tensor("lengths", lengths, ("B",), INT64)
    K = c.integer("K", K)
    list_mode = c.choice("list_mode", list_mode, LIST_MODES)
    dists, idx = outputs(points, K)
    try:
        order = self_tiles_into(dists, idx, points, lengths, K, 2, float(max_dist), list_mode, sorted_rows=True)
    except ValueError as e:
        raise ValueError(f"mentor3ad::knn_self: {e}") from None
    return dists, idx, order


@_knn_self.register_fake
def _(points, lengths, K, max_dist, list_mode):
    d, i = outputs(points, K)
    return d, i, points.new_empty(points.shape[:2], dtype=torch.int64)
