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

    Rows are summed in entry order, so the result is deterministic on CPU. (On CUDA, index_add_
    uses atomics: the order, and so the last bits, may vary between runs.)
    """
    B, M, C = values.shape
    out = values.new_zeros((B * num_rows + 1, C))
    valid = idx >= 0
    flat = torch.where(valid, idx + torch.arange(B, device=idx.device)[:, None] * num_rows, B * num_rows)
    out.index_add_(0, flat.reshape(-1), values.reshape(-1, C))
    return out[:-1].reshape(B, num_rows, C)
