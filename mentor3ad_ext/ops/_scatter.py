"""Deterministic scatter / gather primitives shared by the ops' forward and backward passes.

Float atomics (``index_add_`` on CUDA, ``atomicAdd`` kernels) make scatter-based gradients
depend on thread scheduling. Here a scatter is two steps (see csrc/scatter/scatter.h):

1. :func:`build_plan` groups the entries of every batch by target row with a stable counting
   sort: a :class:`RowPlan` (CSR offsets per row, entry ids of each row in ascending order).
   Build it once and pass it to every scatter that uses the same index (forward and backward of
   an op, or several feature tensors projected through the same geometry).
2. A segment reduction: every output row reduces its own entries sequentially in ascending entry
   order, accumulating in float64, then rounds once to the value dtype. No two threads write the
   same element, so results are reproducible run to run, and CPU and CUDA give bit-identical
   results (same double operations in the same order on both).

Public-internal API (used by points_to_grid / grid_to_points and by the kNN / interpolation ops):

- ``scatter_rows(values (B,S,C), index (B,S*K), num_rows, reduce)``: entry ``m`` (value row
  ``m // K``, i.e. each value row fans out to K entries) goes to row ``index[b, m]``; -1 skips.
  ``reduce`` in sum / mean / max, optional per-entry ``weights`` (sum / mean), output ``(B,R,C)``
  or channels-first ``(B,C,R)``.
- ``gather_rows(src (B,R,C), index (B,S*K), group=K)``: ``out[b,s] = sum_k w * src[b, index[b, s*K+k]]``
  (-1 skips), the adjoint of ``scatter_rows`` with the same index and weights.

Both are differentiable (values / src and weights; scatter max: values), with backward passes
that are themselves deterministic (a gather, or a scatter through a plan). Inputs may have any
strides (e.g. ``grid.view(B, C, H*W).transpose(1, 2)`` is read in place).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch

from . import _checks as ck
from ._contract import INT64, Contract
from ._library import custom_op
from ._launch import C, device_args, dtype_tag, ptr, workspace

# Must match csrc/scatter/scatter.h (Reduce).
REDUCE_TAGS = {"sum": 0, "mean": 1, "max": 2}


class RowPlan(NamedTuple):
    """Stable grouping of (B, M) entries by target row (see csrc/scatter/scatter.h).

    ``offsets`` (B*R+1,) int64: row r of batch b owns ``order[offsets[b*R+r] : offsets[b*R+r+1]]``.
    ``order`` (B*M,) int64: entry ids (0 <= m < M within the batch), ascending within each row;
    -1 past ``offsets[-1]`` (entries with index -1). Identical on CPU and CUDA.
    """

    offsets: torch.Tensor
    order: torch.Tensor
    batch: int
    num_entries: int
    num_rows: int

    def counts(self) -> torch.Tensor:
        """(B, R) int64 number of entries per row."""
        return (self.offsets[1:] - self.offsets[:-1]).view(self.batch, self.num_rows)


# ----------------------------------------------------------------------------- raw launches

def _strides3(t: torch.Tensor) -> Tuple[int, int, int]:
    s = t.stride()
    return int(s[0]), int(s[1]), int(s[2])


def _segment_reduce_raw(values: torch.Tensor, *, offsets: Optional[torch.Tensor], order: Optional[torch.Tensor],
                        group: int, src_index: Optional[torch.Tensor], src_group: int,
                        weights: Optional[torch.Tensor], M: int, num_rows: int, reduce: str,
                        channels_first: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    B, S, Cc = values.shape
    R = num_rows
    shape = (B, Cc, R) if channels_first else (B, R, Cc)
    out = torch.empty(shape, dtype=values.dtype, device=values.device)
    is_max = reduce == "max"
    argmax = torch.empty(shape if is_max else (0,), dtype=torch.int64, device=values.device)
    if out.numel() == 0:
        return out, argmax
    out_v = out.transpose(1, 2) if channels_first else out
    am_v = argmax.transpose(1, 2) if (is_max and channels_first) else argmax
    am_s = _strides3(am_v) if is_max else (0, 0, 0)
    dev, stream = device_args(values)
    # An empty values tensor has no data pointer: every entry then has an invalid source (S == 0)
    # or there are no entries (M == 0); the kernel writes zeros without reading values.
    C().segment_reduce(ptr(offsets), ptr(order), group, ptr(src_index), src_group, ptr(weights),
                       ptr(values), *_strides3(values), ptr(out), *_strides3(out_v),
                       ptr(argmax) if is_max else 0, *am_s, B, M, S, R, Cc, REDUCE_TAGS[reduce],
                       dtype_tag(values), dev, stream)
    return out, argmax


# ----------------------------------------------------------------------------- custom ops

@custom_op("mentor3ad::rows_plan", mutates_args=())
def _rows_plan_op(index: torch.Tensor, num_rows: int) -> Tuple[torch.Tensor, torch.Tensor]:
    c = Contract("rows_plan")
    index, num_rows = c.tensor("index", index, ("B", "M"), INT64), c.integer("num_rows", num_rows)
    B, M = index.shape
    offsets = torch.empty(B * num_rows + 1, dtype=torch.int64, device=index.device)
    order = torch.empty(B * M, dtype=torch.int64, device=index.device)
    dev, stream = device_args(index)
    ws = workspace(C().rows_plan_workspace_bytes(B, M, num_rows), index) if dev >= 0 else None
    C().rows_plan(ptr(index), offsets.data_ptr(), ptr(order), ptr(ws), B, M, num_rows, dev, stream)
    return offsets, order


@_rows_plan_op.register_fake
def _(index, num_rows):
    B, M = index.shape
    return index.new_empty((B * num_rows + 1,)), index.new_empty((B * M,))


@custom_op("mentor3ad::scatter_rows", mutates_args=())
def _scatter_rows_op(values: torch.Tensor, index: torch.Tensor, offsets: torch.Tensor, order: torch.Tensor,
                     num_rows: int, reduce: str, weights: Optional[torch.Tensor],
                     channels_first: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    # The plan's values need no check: the kernels clamp each row's span to `order` and skip
    # entry ids and source rows out of range (csrc/scatter/segment_rules.h).
    c = Contract("scatter_rows")
    values = c.tensor("values", values, ("B", "S", "C"), contiguous=False)  # read at its strides
    index = c.tensor("index", index, ("B", "M"), INT64)
    num_rows = c.integer("num_rows", num_rows)
    c.choice("reduce", reduce, tuple(REDUCE_TAGS))
    offsets = c.tensor("offsets", offsets, (c["B"] * num_rows + 1,), INT64)
    order = c.tensor("order", order, (c["B"] * c["M"],), INT64)
    weights = c.optional("weights", weights, ("B", "M"), (values.dtype,))
    B, S, _ = values.shape
    M = index.shape[1]
    if S and M % S:  # each value row fans out to the same number of entries
        raise ValueError(f"mentor3ad::scatter_rows: index's {M} entries per batch must be a multiple of "
                         f"values' {S} rows")
    return _segment_reduce_raw(values, offsets=offsets, order=order, group=1, src_index=None,
                               src_group=max(M // S, 1) if S else 1, weights=weights, M=M, num_rows=num_rows,
                               reduce=reduce, channels_first=channels_first)


@_scatter_rows_op.register_fake
def _(values, index, offsets, order, num_rows, reduce, weights, channels_first):
    B, _, Cc = values.shape
    shape = (B, Cc, num_rows) if channels_first else (B, num_rows, Cc)
    return values.new_empty(shape), values.new_empty(shape if reduce == "max" else (0,), dtype=torch.int64)


@custom_op("mentor3ad::gather_rows", mutates_args=())
def _gather_rows_op(src: torch.Tensor, index: torch.Tensor, group: int,
                    weights: Optional[torch.Tensor]) -> torch.Tensor:
    c = Contract("gather_rows")
    src = c.tensor("src", src, ("B", "R", "C"), contiguous=False)  # read at its strides
    index = c.tensor("index", index, ("B", "M"), INT64)
    group = c.integer("group", group, 1)
    weights = c.optional("weights", weights, ("B", "M"), (src.dtype,))
    M = index.shape[1]
    out, _ = _segment_reduce_raw(src, offsets=None, order=None, group=group, src_index=index, src_group=1,
                                 weights=weights, M=M, num_rows=M // group, reduce="sum", channels_first=False)
    return out


@_gather_rows_op.register_fake
def _(src, index, group, weights):
    return src.new_empty((src.shape[0], index.shape[1] // group, src.shape[2]))


@custom_op("mentor3ad::rows_dot", mutates_args=())
def _rows_dot_op(a: torch.Tensor, a_index: Optional[torch.Tensor], a_group: int, v: torch.Tensor,
                 v_index: Optional[torch.Tensor], v_group: int, M: int) -> torch.Tensor:
    c = Contract("rows_dot")
    a = c.tensor("a", a, ("B", "Ra", "C"), contiguous=False)  # both read at their strides
    v = c.tensor("v", v, ("B", "Rv", "C"), (a.dtype,), contiguous=False)
    M = c.integer("M", M)
    a_index = c.optional("a_index", a_index, ("B", M), INT64)
    v_index = c.optional("v_index", v_index, ("B", M), INT64)
    a_group, v_group = c.integer("a_group", a_group, 1), c.integer("v_group", v_group, 1)
    B, Ra, Cc = a.shape
    out = torch.zeros((B, M), dtype=a.dtype, device=a.device)
    if out.numel() == 0 or Cc == 0:
        return out
    dev, stream = device_args(a)
    C().rows_dot(ptr(a), *_strides3(a), Ra, ptr(a_index), a_group, ptr(v), *_strides3(v), v.shape[1],
                 ptr(v_index), v_group, ptr(out), B, M, Cc, dtype_tag(a), dev, stream)
    return out


@_rows_dot_op.register_fake
def _(a, a_index, a_group, v, v_index, v_group, M):
    return a.new_empty((a.shape[0], M))


@custom_op("mentor3ad::scatter_max_backward", mutates_args=())
def _max_backward_op(grad: torch.Tensor, argmax: torch.Tensor, index: torch.Tensor, num_src: int) -> torch.Tensor:
    c = Contract("scatter_max_backward")
    grad = c.tensor("grad", grad, ("B", "R", "C"), contiguous=False)  # both read at their strides
    argmax = c.tensor("argmax", argmax, ("B", "R", "C"), INT64, contiguous=False)
    index, num_src = c.tensor("index", index, ("B", "M"), INT64), c.integer("num_src", num_src)
    B, R, Cc = grad.shape
    M = index.shape[1]
    out = torch.zeros((B, num_src, Cc), dtype=grad.dtype, device=grad.device)
    if out.numel() == 0:
        return out
    dev, stream = device_args(grad)
    C().scatter_max_backward(ptr(index), ptr(argmax), *_strides3(argmax), ptr(grad), *_strides3(grad), ptr(out),
                             M // num_src, B, M, num_src, R, Cc, dtype_tag(grad), dev, stream)
    return out


@_max_backward_op.register_fake
def _(grad, argmax, index, num_src):
    return grad.new_empty((grad.shape[0], num_src, grad.shape[2]))


# ----------------------------------------------------------------------------- autograd

def _scatter_setup(ctx, inputs, output):
    values, index, offsets, order, num_rows, reduce, weights, channels_first = inputs
    ctx.save_for_backward(values, index, offsets, weights, output[1])
    ctx.num_rows, ctx.reduce, ctx.channels_first = num_rows, reduce, channels_first


def _scatter_backward(ctx, grad_out, _grad_argmax):
    values, index, offsets, weights, argmax = ctx.saved_tensors
    B, S, _ = values.shape
    R = ctx.num_rows
    M = index.shape[1]
    K = M // S if S else 1
    g = grad_out.transpose(1, 2) if ctx.channels_first else grad_out  # logical (B, R, C)
    grad_values = grad_weights = None
    if ctx.reduce == "max":
        if ctx.needs_input_grad[0]:
            am = argmax.transpose(1, 2) if ctx.channels_first else argmax
            grad_values = _max_backward_op(g, am, index, S)
        return grad_values, None, None, None, None, None, None, None
    scale = None
    if ctx.reduce == "mean":
        counts = (offsets[1:] - offsets[:-1]).view(B, R)
        valid = (index >= 0) & (index < R)
        cnt = counts.gather(1, torch.where(valid, index, 0)) if R else torch.ones_like(index)
        scale = torch.where(valid, 1.0 / cnt.clamp(min=1).to(values.dtype), 0.0).to(values.dtype)
    if ctx.needs_input_grad[0]:
        w = weights if scale is None else (scale if weights is None else weights * scale)
        grad_values = _gather_rows_op(g, index, K, w)
    if weights is not None and ctx.needs_input_grad[6]:
        grad_weights = _rows_dot_op(g, index, 1, values, None, K, M)
        if scale is not None:
            grad_weights = grad_weights * scale
    return grad_values, None, None, None, None, None, grad_weights, None


_scatter_rows_op.register_autograd(_scatter_backward, setup_context=_scatter_setup)


def _gather_setup(ctx, inputs, output):
    src, index, group, weights = inputs
    ctx.save_for_backward(src, index, weights)
    ctx.group = group
    ctx.src_shape = tuple(src.shape)
    ctx.src_channels_first = src.dim() == 3 and src.shape[1] > 1 and src.stride(1) == 1 and src.stride(2) != 1


def _gather_backward(ctx, grad_out):
    src, index, weights = ctx.saved_tensors
    B, R, Cc = ctx.src_shape
    M = index.shape[1]
    grad_src = grad_weights = None
    if ctx.needs_input_grad[0]:
        offsets, order = _rows_plan_op(index, R)
        # The adjoint: a scatter through the plan, into src's layout (channels-first images stay so).
        out, _ = _scatter_rows_op(grad_out, index, offsets, order, R, "sum", weights, ctx.src_channels_first)
        grad_src = out.transpose(1, 2) if ctx.src_channels_first else out
    if weights is not None and ctx.needs_input_grad[3]:
        grad_weights = _rows_dot_op(grad_out, None, ctx.group, src, index, 1, M)
    return grad_src, None, None, grad_weights


_gather_rows_op.register_autograd(_gather_backward, setup_context=_gather_setup)


# ----------------------------------------------------------------------------- Python API

def check_index(op: str, name: str, index, shape: Tuple[int, ...], num_rows: int, device: torch.device,
                *, shape_of: str = "") -> torch.Tensor:
    """Validate an entry index: integer dtype, `shape`, -1 or within [0, num_rows); int64 contiguous."""
    if not isinstance(index, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor of int64, got {type(index).__name__}")
    if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
        raise TypeError(f"{op}: {name} must be an integer tensor (int64), got {str(index.dtype).replace('torch.', '')}")
    if tuple(index.shape) != tuple(shape):
        expect = "(" + ", ".join(str(s) for s in shape) + ")"
        extra = f" ({shape_of})" if shape_of else ""
        raise ValueError(f"{op}: {name} must have shape {expect}{extra}, got {ck.shape_str(index)}")
    if index.device != device:
        raise ValueError(f"{op}: {name} is on {index.device} but the values are on {device}")
    index = index.to(torch.int64).contiguous()
    if ck.value_checks_enabled() and index.numel():
        bad = (index < -1) | (index >= num_rows)
        if bool(bad.any()):
            pos = tuple(bad.nonzero()[0].tolist())
            raise ValueError(f"{op}: {name} must lie in [0, {num_rows}) or be -1 (skip), "
                             f"got {int(index[pos])} at index {pos}")
    return index


def _check_weights(op: str, weights, index: torch.Tensor, values: torch.Tensor) -> Optional[torch.Tensor]:
    if weights is None:
        return None
    ck.check_tensor(op, "weights", weights, ndim=2, shape_hint="(B, M)")
    if weights.shape != index.shape:
        raise ValueError(f"{op}: weights must have the shape of index {ck.shape_str(index)}, got {ck.shape_str(weights)}")
    if weights.dtype != values.dtype:
        raise TypeError(f"{op}: weights dtype {weights.dtype} differs from the values dtype {values.dtype}")
    ck.check_same_device(op, values=values, weights=weights)
    return weights.contiguous()


def _check_reduce(op: str, reduce) -> str:
    if reduce not in REDUCE_TAGS:
        raise ValueError(f"{op}: reduce must be one of {sorted(REDUCE_TAGS)}, got {reduce!r}")
    return reduce


def build_plan(index: torch.Tensor, num_rows: int) -> RowPlan:
    """Stable grouping of ``index`` (B, M) int64 entries by target row in [0, num_rows); -1 skips."""
    op = "build_plan"
    num_rows = ck.check_positive_int(op, "num_rows", num_rows, minimum=0)
    if isinstance(index, torch.Tensor) and index.dim() != 2:
        raise ValueError(f"{op}: index must be a 2-D tensor (B, M), got shape {ck.shape_str(index)}")
    index = check_index(op, "index", index, tuple(index.shape) if isinstance(index, torch.Tensor) else (),
                        num_rows, index.device if isinstance(index, torch.Tensor) else torch.device("cpu"))
    offsets, order = _rows_plan_op(index, num_rows)
    return RowPlan(offsets, order, index.shape[0], index.shape[1], num_rows)


def scatter_rows(values: torch.Tensor, index: torch.Tensor, num_rows: int, reduce: str = "sum", *,
                 weights: Optional[torch.Tensor] = None, plan: Optional[RowPlan] = None,
                 channels_first: bool = False, return_argmax: bool = False):
    """Deterministic scatter of (B, S, C) values into (B, num_rows, C) rows.

    ``index`` is (B, S*K) int64: entry ``m`` carries value row ``m // K`` (weighted by
    ``weights[b, m]`` when given) to row ``index[b, m]``; -1 skips the entry. ``reduce``:
    ``"sum"``; ``"mean"`` (sum / number of entries of the row); ``"max"`` (first largest, ties to
    the lowest entry; no weights). Empty rows are 0. Accumulates in float64, rounds once.
    ``channels_first=True`` returns (B, C, num_rows) directly (no transpose copy).
    ``plan``: a :func:`build_plan` result for this very index (reused, not rebuilt).
    ``return_argmax`` (max only): also return the (B, R, C) / (B, C, R) winning entry ids (-1: empty).
    """
    op = "scatter_rows"
    ck.check_tensor(op, "values", values, ndim=3, shape_hint="(B, S, C)")
    reduce = _check_reduce(op, reduce)
    num_rows = ck.check_positive_int(op, "num_rows", num_rows, minimum=0)
    B, S, _ = values.shape
    if not isinstance(index, torch.Tensor) or index.dim() != 2 or index.shape[0] != B or \
            (S and index.shape[1] % S) or (not S and index.shape[1]):
        got = ck.shape_str(index) if isinstance(index, torch.Tensor) else type(index).__name__
        raise ValueError(f"{op}: index must have shape (B, S*K) = ({B}, {S}*K) for values of shape "
                         f"{ck.shape_str(values)}, got {got}")
    index = check_index(op, "index", index, tuple(index.shape), num_rows, values.device)
    weights = _check_weights(op, weights, index, values)
    if weights is not None and reduce == "max":
        raise ValueError(f"{op}: weights are not supported with reduce='max'")
    if plan is None:
        plan = build_plan(index, num_rows)
    elif (plan.batch, plan.num_entries, plan.num_rows) != (B, index.shape[1], num_rows):
        raise ValueError(f"{op}: plan was built for (B, M, R) = {(plan.batch, plan.num_entries, plan.num_rows)}, "
                         f"but this call has {(B, index.shape[1], num_rows)}")
    out, argmax = _scatter_rows_op(values, index, plan.offsets, plan.order, num_rows, reduce, weights, channels_first)
    return (out, argmax) if (return_argmax and reduce == "max") else out


def gather_rows(src: torch.Tensor, index: torch.Tensor, group: int = 1, *,
                weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out[b, s, :] = sum_{k<group} w[b, s*group+k] * src[b, index[b, s*group+k], :]`` -> (B, M/group, C).

    -1 entries contribute nothing; accumulated in float64 in ascending k. The adjoint of
    :func:`scatter_rows` (sum) with the same index and weights; its gradient to ``src`` is that
    deterministic scatter (into src's own layout: channels-first views stay channels-first).
    """
    op = "gather_rows"
    ck.check_tensor(op, "src", src, ndim=3, shape_hint="(B, R, C)")
    group = ck.check_positive_int(op, "group", group)
    B, R, _ = src.shape
    if not isinstance(index, torch.Tensor) or index.dim() != 2 or index.shape[0] != B or index.shape[1] % group:
        got = ck.shape_str(index) if isinstance(index, torch.Tensor) else type(index).__name__
        raise ValueError(f"{op}: index must have shape (B, S*group) = ({B}, S*{group}) for src of shape "
                         f"{ck.shape_str(src)}, got {got}")
    index = check_index(op, "index", index, tuple(index.shape), R, src.device)
    weights = _check_weights(op, weights, index, src)
    return _gather_rows_op(src, index, group, weights)
