"""Index helpers shared by the adapters (pure torch, autograd-friendly)."""
from __future__ import annotations

import torch


def masked_gather(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """points (B, P, D), idx (B, ...) with -1 for padding -> (B, ..., D), zeros where idx < 0."""
    B, P, D = points.shape
    if P == 0 or idx.numel() == 0:
        return points.new_zeros((*idx.shape, D))
    flat = idx.reshape(B, -1)
    valid = flat >= 0
    safe = flat.clamp(min=0)
    out = points.gather(1, safe[..., None].expand(-1, -1, D))
    out = torch.where(valid[..., None], out, out.new_zeros(()))
    return out.reshape(*idx.shape, D)


def scatter_add_rows(values: torch.Tensor, idx: torch.Tensor, num_rows: int) -> torch.Tensor:
    """values (B, M, C), idx (B, M) with -1 = skip -> (B, num_rows, C) row sums.

    Deterministic on every device (rows summed in entry order, no atomics): it is the transposed
    weighted gather with unit weights.
    """
    from .weighted_gather import _weighted_gather_dx

    ones = values.new_ones((values.shape[0], values.shape[1], 1))
    return _weighted_gather_dx(values.contiguous(), idx[..., None].contiguous(), ones, num_rows)
