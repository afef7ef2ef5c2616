"""Weighted gather: out[b, r] = sum_j w[b, r, j] * x[b, idx[b, r, j]] (the sparse x dense product
behind IDW interpolation and grid interpolation).

A thin (B, R, K) front end over the deterministic row primitives in `_scatter` (gather_rows and
its adjoint scatter): accumulation in float64, and gradients without float atomics, so the same
input gives the same bits on every run and on CPU and CUDA alike.
"""
from __future__ import annotations

import torch

from . import _checks as ck
from ._scatter import gather_rows

OP = "weighted_gather"


def weighted_gather(x: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """x (B, N, C), idx (B, R, K) int64 in [-1, N), weights (B, R, K) -> (B, R, C).

    out[b, r] = sum_j weights[b, r, j] * x[b, idx[b, r, j]]; idx -1 entries are skipped. Never
    materialises (B, R, K, C). Differentiable w.r.t. x and weights (deterministic).
    """
    ck.check_tensor(OP, "x", x, ndim=3, dtypes=ck.FLOAT_DTYPES, shape_hint="(B, N, C)")
    ck.check_tensor(OP, "idx", idx, ndim=3, dtypes=(torch.int64, torch.int32), shape_hint="(B, R, K)")
    ck.check_tensor(OP, "weights", weights, ndim=3, dtypes=ck.FLOAT_DTYPES, shape_hint="(B, R, K)")
    ck.check_same_device(OP, x=x, idx=idx, weights=weights)
    if idx.shape != weights.shape or idx.shape[0] != x.shape[0]:
        raise ValueError(f"{OP}: idx and weights must have the same shape (B, R, K) with B as in x, got x "
                         f"{ck.shape_str(x)}, idx {ck.shape_str(idx)}, weights {ck.shape_str(weights)}")
    B, R, K = idx.shape
    if ck.value_checks_enabled() and idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -1 or hi >= x.shape[1]:
            raise ValueError(f"{OP}: idx must lie in [-1, {x.shape[1] - 1}], got values in [{lo}, {hi}]")
    if K == 0:
        return x.new_zeros((B, R, x.shape[2]))
    return gather_rows(x, idx.reshape(B, R * K), K, weights=weights.to(x.dtype).reshape(B, R * K))
