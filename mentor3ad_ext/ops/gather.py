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
    """values (B, M, C), idx (B, M) with -1 = skip -> (B, num_rows, C) row sums, deterministic.

    For backward passes: inputs are trusted (no validation, so symbolic sizes under
    torch.compile / opcheck pass through).
    """
    from ._scatter import _rows_plan_op, _scatter_rows_op

    idx = idx.contiguous()
    offsets, order = _rows_plan_op(idx, num_rows)
    out, _ = _scatter_rows_op(values.contiguous(), idx, offsets, order, num_rows, "sum", None, False)
    return out
