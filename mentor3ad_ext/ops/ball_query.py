"""Ball query (pytorch3d-compatible `ball_query`)."""
from __future__ import annotations

from typing import Optional

import torch

from . import _checks as ck
from ._library import custom_op
from ._launch import C, device_args, dtype_tag, ptr
from .knn import KNN, _pair_inputs, _search_args, knn_gather, pair_distance_backward

OP = "ball_query"


@custom_op("mentor3ad::ball_query", mutates_args=())
def _ball_query(p1: torch.Tensor, p2: torch.Tensor, lengths1: torch.Tensor, lengths2: torch.Tensor,
                K: int, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    p1, p2, lengths1, lengths2, K = _search_args("ball_query", p1, p2, lengths1, lengths2, K)
    B, P1, D = p1.shape
    dists = torch.empty((B, P1, K), dtype=p1.dtype, device=p1.device)
    idx = torch.empty((B, P1, K), dtype=torch.int64, device=p1.device)
    if dists.numel():
        dev, stream = device_args(p1)
        C().ball_query(ptr(p1), ptr(p2), ptr(lengths1), ptr(lengths2), ptr(dists), ptr(idx),
                       B, P1, p2.shape[1], D, K, float(radius) * float(radius), dtype_tag(p1), dev, stream)
    return dists, idx


@_ball_query.register_fake
def _(p1, p2, lengths1, lengths2, K, radius):
    B, P1, _ = p1.shape
    return p1.new_empty((B, P1, K)), p1.new_empty((B, P1, K), dtype=torch.int64)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1], output[1])


def _backward(ctx, grad_dists, grad_idx):
    p1, p2, idx = ctx.saved_tensors
    g1, g2 = pair_distance_backward(p1, p2, idx, grad_dists, 2, *ctx.needs_input_grad[:2])
    return g1, g2, None, None, None, None


_ball_query.register_autograd(_backward, setup_context=_setup)


def ball_query(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: Optional[torch.Tensor] = None,
    lengths2: Optional[torch.Tensor] = None,
    K: int = 500,
    radius: float = 0.2,
    return_nn: bool = True,
) -> KNN:
    """The first K points of p2 (in index order) within `radius` of each p1 point.

    A point is inside when its squared distance is strictly below radius**2 (radius**2 computed
    in float64, rounded once to the input dtype). Returns KNN(dists, idx, nn) like pytorch3d:
    squared distances (B, P1, K), indices (B, P1, K) in ascending index order padded with -1
    (distance 0), neighbour coordinates (B, P1, K, D) or None. dists is differentiable.
    """
    K = ck.check_positive_int(OP, "K", K)
    if isinstance(radius, torch.Tensor):
        radius = float(radius)
    if isinstance(radius, bool) or not isinstance(radius, (int, float)):
        raise TypeError(f"{OP}: radius must be a float, got {type(radius).__name__}")
    if not (radius > 0) or radius == float("inf"):
        raise ValueError(f"{OP}: radius must be a finite number > 0, got {radius}")
    a, b, lengths1, lengths2 = _pair_inputs(OP, p1, p2, lengths1, lengths2)
    dists, idx = _ball_query(a, b, lengths1, lengths2, K, float(radius))
    nn = knn_gather(p2, idx) if return_nn else None
    return KNN(dists, idx, nn)
