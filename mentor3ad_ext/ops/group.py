"""Point-MAE style grouping: FPS centers, kNN groups, coordinates relative to their center."""
from __future__ import annotations

from collections import namedtuple
from typing import Optional

import torch

from . import _checks as ck
from .fps import sample_farthest_points
from .knn import knn_gather, knn_points

OP = "group_points"

Groups = namedtuple("Groups", ["neighborhoods", "centers", "idx"])


def group_points(
    points: torch.Tensor,
    num_groups: int,
    group_size: int,
    lengths: Optional[torch.Tensor] = None,
    *,
    start_idx=0,
    random_start_point: bool = False,
) -> Groups:
    """Split clouds into `num_groups` local patches of `group_size` points (Point-MAE's Group).

    Centers are farthest point samples (exact order, from start_idx); each group is the kNN of
    its center, nearest first (so slot 0 is the center itself), as coordinates relative to the
    center. Returns Groups(neighborhoods (B, G, S, 3), centers (B, G, 3), idx (B, G, S) int64).
    Clouds with fewer than G points have padded centers (zeros, idx -1 rows); with fewer than S
    points, groups are padded with idx -1 and zero offsets. Differentiable w.r.t. points.
    """
    num_groups = ck.check_positive_int(OP, "num_groups", num_groups)
    group_size = ck.check_positive_int(OP, "group_size", group_size)
    ck.check_points(OP, "points", points, allow_half=True)
    B, P, _ = points.shape
    lengths = ck.check_lengths(OP, "lengths", lengths, B, P, points.device)
    centers, center_idx = sample_farthest_points(points, lengths, num_groups, random_start_point,
                                                 start_idx=start_idx)
    n_centers = (center_idx >= 0).sum(1)
    nn = knn_points(centers, points, n_centers, lengths, K=group_size)
    valid = (nn.idx >= 0)[..., None]
    neighborhoods = torch.where(valid, knn_gather(points, nn.idx) - centers[:, :, None, :],
                                centers.new_zeros(()))
    return Groups(neighborhoods, centers, nn.idx)
