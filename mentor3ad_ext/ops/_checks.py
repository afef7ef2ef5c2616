"""Input validation shared by every op adapter.

Shape, dtype and device checks are free and always on. Checks that must read tensor *values*
(finite coordinates, lengths within range, indices within range) are on by default; on CUDA each
costs one host synchronisation, so hot loops can turn them off with `value_checks(False)` (the
kernels then clamp lengths and indices so that nothing is ever read out of bounds). They are
skipped while torch.compile traces.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional, Sequence

import torch

_state = threading.local()

FLOAT_DTYPES = (torch.float32, torch.float64)
HALF_DTYPES = (torch.float16, torch.bfloat16)


def value_checks_enabled() -> bool:
    if getattr(_state, "value_checks", True) is False:
        return False
    compiler = getattr(torch, "compiler", None)
    return not (compiler is not None and compiler.is_compiling())


def set_value_checks(enabled: bool) -> None:
    """Turn the value-dependent input checks on or off for this thread."""
    _state.value_checks = bool(enabled)


@contextlib.contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """Context manager form of `set_value_checks`."""
    old = getattr(_state, "value_checks", True)
    _state.value_checks = bool(enabled)
    try:
        yield
    finally:
        _state.value_checks = old


def shape_str(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_tensor(op: str, name: str, t, *, ndim: Optional[int] = None,
                 dtypes: Sequence[torch.dtype] = FLOAT_DTYPES, shape_hint: str = "") -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{op}: {name} must have dtype in ({names}), got {str(t.dtype).replace('torch.', '')}")
    if ndim is not None and t.dim() != ndim:
        hint = f" {shape_hint}" if shape_hint else ""
        raise ValueError(f"{op}: {name} must be a {ndim}-D tensor{hint}, got shape {shape_str(t)}")
    return t


def check_points(op: str, name: str, t, *, allow_half: bool = False, dim: Optional[int] = None) -> torch.Tensor:
    dtypes = FLOAT_DTYPES + (HALF_DTYPES if allow_half else ())
    check_tensor(op, name, t, ndim=3, dtypes=dtypes, shape_hint="(B, P, D)")
    if t.shape[2] == 0:  # no coordinates: no distances (the kernels would read from a null buffer)
        raise ValueError(f"{op}: {name} must have at least one coordinate (D >= 1), got shape {shape_str(t)}")
    if dim is not None and t.shape[2] != dim:
        raise ValueError(f"{op}: {name} must have {dim} coordinates in its last dimension, got shape {shape_str(t)}")
    return t


def check_same_device(op: str, **tensors: Optional[torch.Tensor]) -> None:
    items = [(n, t) for n, t in tensors.items() if t is not None]
    if not items:
        return
    first_name, first = items[0]
    for n, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{op}: {n} is on {t.device} but {first_name} is on {first.device}; "
                             "all inputs must be on the same device")


def check_finite(op: str, name: str, t: torch.Tensor) -> None:
    if not value_checks_enabled() or t.numel() == 0:
        return
    if t.device.type == "cpu" and t.dtype in FLOAT_DTYPES:
        # Our own threads: a torch reduction here would wake torch's OpenMP team, whose
        # spinning threads then slow down the kernel that follows on the same cores.
        from ._launch import C

        flat = t.contiguous()
        first = C().first_non_finite(flat.data_ptr(), flat.numel(), 0 if flat.dtype == torch.float32 else 1)
        if first < 0:
            return
        bad = list(torch.unravel_index(torch.tensor(first), t.shape))
        raise ValueError(f"{op}: {name} contains NaN or Inf (first at index {tuple(int(i) for i in bad)}); "
                         "coordinates must be finite")
    # One float64 sum is far cheaper than isfinite().all(): NaN and Inf propagate into it, and
    # float32 data cannot overflow it. Only a non-finite sum pays for the exact element check.
    if bool(torch.isfinite(t.sum(dtype=torch.float64))):
        return
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0].tolist()
        raise ValueError(f"{op}: {name} contains NaN or Inf (first at index {tuple(bad)}); "
                         "coordinates must be finite")


def check_lengths(op: str, name: str, lengths, B: int, P: int, device: torch.device) -> torch.Tensor:
    """Return lengths as a contiguous int64 tensor on `device` (P for every cloud when None)."""
    if lengths is None:
        return torch.full((B,), P, dtype=torch.int64, device=device)
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor of int64 or None, got {type(lengths).__name__}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"{op}: {name} must be an integer tensor, got {str(lengths.dtype).replace('torch.', '')}")
    if lengths.shape != (B,):
        raise ValueError(f"{op}: {name} must have shape ({B},) (one length per cloud), got {shape_str(lengths)}")
    if lengths.device != device:
        raise ValueError(f"{op}: {name} is on {lengths.device} but the points are on {device}")
    lengths = lengths.to(torch.int64).contiguous()
    if value_checks_enabled() and B:
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 0 or hi > P:
            raise ValueError(f"{op}: {name} must lie in [0, {P}] (the padded size), got values in [{lo}, {hi}]")
    return lengths


def check_positive_int(op: str, name: str, v, *, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.dtype.is_floating_point:
            v = int(v)
        else:
            raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {v}")
    return v


def at_most_points(k: int, points: int) -> int:
    """A neighbour count for ops whose output does not hold the neighbours (descriptors,
    interpolation): past the cloud's size it selects the same neighbours as the size itself, so
    it is capped there instead of sizing the search's (B, P, k) lists by it (k = 2**31 asked for
    tens of GB on a 3-point cloud)."""
    return min(k, max(points, 1))


def as_float_input(t: torch.Tensor) -> torch.Tensor:
    """Half inputs are computed in float32; everything handed to `_C` is contiguous."""
    if t.dtype in HALF_DTYPES:
        t = t.float()
    return t.contiguous()
