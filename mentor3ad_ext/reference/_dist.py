"""The squared distance in the kernels' exact operation order: ((a0-b0)^2 + (a1-b1)^2) + ...

A summation over dims by torch.sum may round differently in the last bit; element-wise ops in
this fixed order reproduce the kernels bit for bit, so references can compare indices exactly.
"""
import torch


def sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (..., D), b (..., D) broadcastable -> (...) squared distances."""
    d = None
    for j in range(a.shape[-1]):
        t = a[..., j] - b[..., j]
        d = t * t if d is None else d + t * t
    if d is None:
        return torch.zeros(torch.broadcast_shapes(a.shape[:-1], b.shape[:-1]), dtype=a.dtype, device=a.device)
    return d
