"""Weighted gather: out[b, r] = sum_j w[b, r, j] * x[b, idx[b, r, j]] (the ELL sparse x dense
product behind IDW interpolation and grid interpolation), with a deterministic backward.

The gradient to x is the transposed product. Instead of float atomics (whose summation order,
and so last bits, change from run to run), the backward groups entries by target row with a
stable sort and sums each row in entry order: same bits every run, on CPU and CUDA alike.
"""
from __future__ import annotations

import torch

from . import _checks as ck
from ._launch import C, device_args, dtype_tag, ptr

OP = "weighted_gather"


@torch.library.custom_op("mentor3ad::weighted_gather", mutates_args=())
def _weighted_gather(x: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    B, N, Cc = x.shape
    R, K = idx.shape[1], idx.shape[2]
    out = torch.empty((B, R, Cc), dtype=x.dtype, device=x.device)
    if out.numel():
        dev, stream = device_args(x)
        C().ell_spmm(ptr(x), ptr(idx), ptr(w), ptr(out), B, N, R, K, Cc, dtype_tag(x), dev, stream)
    return out


@_weighted_gather.register_fake
def _(x, idx, w):
    return x.new_empty((x.shape[0], idx.shape[1], x.shape[2]))


@torch.library.custom_op("mentor3ad::weighted_gather_dw", mutates_args=())
def _weighted_gather_dw(x: torch.Tensor, idx: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    B, N, Cc = x.shape
    R, K = idx.shape[1], idx.shape[2]
    out = torch.empty((B, R, K), dtype=x.dtype, device=x.device)
    if out.numel():
        dev, stream = device_args(x)
        C().ell_dot(ptr(x), ptr(idx), ptr(grad), ptr(out), B, N, R, K, Cc, dtype_tag(x), dev, stream)
    return out


@_weighted_gather_dw.register_fake
def _(x, idx, grad):
    return x.new_empty(idx.shape)


@torch.library.custom_op("mentor3ad::weighted_gather_dx", mutates_args=())
def _weighted_gather_dx(grad: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, num_rows: int) -> torch.Tensor:
    B, R, Cc = grad.shape
    K = idx.shape[2]
    out = torch.empty((B, num_rows, Cc), dtype=grad.dtype, device=grad.device)
    if out.numel() == 0:
        return out
    offsets, entries = csr_plan(idx, num_rows)
    dev, stream = device_args(grad)
    C().csr_spmm(ptr(grad), ptr(offsets), ptr(entries), ptr(w), ptr(out), B, num_rows, R, K, Cc,
                 dtype_tag(grad), dev, stream)
    return out


@_weighted_gather_dx.register_fake
def _(grad, idx, w, num_rows):
    return grad.new_empty((grad.shape[0], num_rows, grad.shape[2]))


def csr_plan(idx: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Group the flat entries of idx (B, R, K) by target row: (offsets (B, num_rows+1), entries (B, R*K)).

    Entries with idx -1 sort after every row and are never referenced by an offset range.
    """
    B = idx.shape[0]
    flat = idx.reshape(B, -1)
    keys = torch.where(flat < 0, torch.full_like(flat, num_rows), flat)
    sorted_keys, entries = torch.sort(keys, dim=1, stable=True)
    bounds = torch.arange(num_rows + 1, device=idx.device, dtype=keys.dtype).expand(B, -1).contiguous()
    offsets = torch.searchsorted(sorted_keys.contiguous(), bounds)
    return offsets.contiguous(), entries.contiguous()


def _setup(ctx, inputs, output):
    x, idx, w = inputs
    ctx.save_for_backward(x, idx, w)


def _backward(ctx, grad):
    x, idx, w = ctx.saved_tensors
    grad = grad.contiguous()
    gx = _weighted_gather_dx(grad, idx, w, x.shape[1]) if ctx.needs_input_grad[0] else None
    gw = _weighted_gather_dw(x, idx, grad) if ctx.needs_input_grad[2] else None
    return gx, None, gw


_weighted_gather.register_autograd(_backward, setup_context=_setup)


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
    idx = idx.to(torch.int64).contiguous()
    if ck.value_checks_enabled() and idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -1 or hi >= x.shape[1]:
            raise ValueError(f"{OP}: idx must lie in [-1, {x.shape[1] - 1}], got values in [{lo}, {hi}]")
    return _weighted_gather(x.contiguous(), idx, weights.to(x.dtype).contiguous())
