"""Inverse-distance-weighted k-NN feature interpolation (PointNet++ feature propagation)."""
from __future__ import annotations

from typing import Optional

import torch

from . import _checks as ck
from .knn import knn_points
from .weighted_gather import weighted_gather

OP = "interpolate_features"


def idw_weights(sq_dists: torch.Tensor, idx: torch.Tensor, power: float, eps: float) -> torch.Tensor:
    """Normalised weights 1 / (d**power + eps) over the valid (idx >= 0) neighbours; d = sqrt(sq_dists).

    Rows without any valid neighbour get all-zero weights (so their output is 0, never NaN).
    """
    valid = idx >= 0
    # d**power = sq_dists**(power/2); the clamp keeps the gradient finite for coincident points.
    dp = sq_dists.clamp_min(1e-30).pow(power / 2.0)
    w = torch.where(valid, 1.0 / (dp + eps), dp.new_zeros(()))
    total = w.sum(-1, keepdim=True)
    return w / torch.where(total > 0, total, total.new_ones(()))


def interpolate_features(
    query: torch.Tensor,
    ref: torch.Tensor,
    ref_features: torch.Tensor,
    k: int = 3,
    lengths_query: Optional[torch.Tensor] = None,
    lengths_ref: Optional[torch.Tensor] = None,
    *,
    power: float = 1.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Features at `query` points, interpolated from the k nearest `ref` points.

    Args:
        query: (B, P1, 3) points to interpolate at; ref: (B, P2, 3) points carrying features.
        ref_features: (B, P2, C) features of the ref points (channels last).
        k: neighbours (clouds with fewer valid ref points use what they have).
        power, eps: weights 1 / (dist**power + eps), normalised to sum 1 (power 1: PointNet++ /
            M3DM; power 2: inverse squared distance).

    Returns:
        (B, P1, C); zero for queries past lengths_query or clouds without ref points.
        Differentiable w.r.t. ref_features, query and ref (through the weights; the choice of
        neighbours itself is piecewise constant). Memory O(B*P1*(k + C)).
    """
    k = ck.check_positive_int(OP, "k", k)
    ck.check_tensor(OP, "ref_features", ref_features, ndim=3, dtypes=ck.FLOAT_DTYPES + ck.HALF_DTYPES,
                    shape_hint="(B, P2, C)")
    if ref_features.shape[:2] != ref.shape[:2]:
        raise ValueError(f"{OP}: ref_features must be (B, P2, C) matching ref {ck.shape_str(ref)}, "
                         f"got {ck.shape_str(ref_features)}")
    ck.check_same_device(OP, ref=ref, ref_features=ref_features)
    if not (isinstance(power, (int, float)) and power > 0) or not (isinstance(eps, (int, float)) and eps >= 0):
        raise ValueError(f"{OP}: power must be > 0 and eps >= 0, got power={power!r}, eps={eps!r}")
    nn = knn_points(query, ref, lengths_query, lengths_ref, K=ck.at_most_points(k, ref.shape[1]))
    feats = ref_features.float() if ref_features.dtype in ck.HALF_DTYPES else ref_features
    w = idw_weights(nn.dists, nn.idx, float(power), float(eps)).to(feats.dtype)
    return weighted_gather(feats, nn.idx, w)
