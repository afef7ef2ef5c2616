"""Input normalisation and validation for the metrics: tensors or arrays in, contiguous tensors out.

Inputs are never modified: conversions (numpy -> torch, half -> float32, masks -> uint8,
non-contiguous -> contiguous) always produce new tensors or read-only views.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

FLOAT_IN = (torch.float32, torch.float64)
HALF_IN = (torch.float16, torch.bfloat16)


def shape_str(shape) -> str:
    return str(tuple(int(s) for s in shape))


def to_tensor(op: str, name: str, x) -> torch.Tensor:
    """torch.Tensor, numpy array, or a list/tuple of equally shaped maps -> torch.Tensor (no copy when possible)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, (list, tuple)) and any(isinstance(v, (torch.Tensor, np.ndarray, list, tuple)) for v in x):
        items = [to_tensor(op, f"{name}[{i}]", v) for i, v in enumerate(x)]
        shapes = {tuple(t.shape) for t in items}
        if len(shapes) != 1:
            raise ValueError(f"{op}: the entries of {name} must all have the same shape, got "
                             + ", ".join(sorted(shape_str(s) for s in shapes)))
        return torch.stack([t.to(items[0].device) for t in items])
    if isinstance(x, (np.ndarray, list, tuple)):
        a = np.asarray(x)  # a plain list of numbers, e.g. image scores
        if a.dtype == object or a.dtype.kind in "USV":
            raise TypeError(f"{op}: {name} must hold numbers, got a numpy array of dtype {a.dtype}")
        if not a.flags.writeable:
            a = a.copy()  # torch.from_numpy warns on read-only memory; the input stays untouched
        return torch.from_numpy(a)
    raise TypeError(f"{op}: {name} must be a torch.Tensor or a numpy array, got {type(x).__name__}")


def _as_nhw(op: str, name: str, t: torch.Tensor, original) -> torch.Tensor:
    if t.dim() == 2:
        return t.unsqueeze(0)
    if t.dim() == 4 and t.shape[1] == 1:
        return t[:, 0]
    if t.dim() != 3:
        raise ValueError(f"{op}: {name} must have shape (N, H, W) (or (H, W), (N, 1, H, W)), got {shape_str(original)}")
    return t


def maps_and_masks(op: str, anomaly_maps, gt_masks) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return (maps float32/float64 (N, H, W) contiguous, masks uint8 (N, H, W) contiguous)."""
    maps = to_tensor(op, "anomaly_maps", anomaly_maps)
    masks = to_tensor(op, "gt_masks", gt_masks)
    maps3 = _as_nhw(op, "anomaly_maps", maps, maps.shape)
    masks3 = _as_nhw(op, "gt_masks", masks, masks.shape)
    if maps3.shape != masks3.shape:
        raise ValueError(f"{op}: anomaly_maps and gt_masks must have the same shape, got anomaly_maps "
                         f"{shape_str(maps.shape)} and gt_masks {shape_str(masks.shape)}")
    if maps3.numel() == 0:
        raise ValueError(f"{op}: empty input: anomaly_maps has shape {shape_str(maps.shape)}")
    if maps3.device != masks3.device:
        raise ValueError(f"{op}: gt_masks is on {masks3.device} but anomaly_maps is on {maps3.device}")
    if maps3.dtype.is_complex or maps3.dtype == torch.bool:
        raise TypeError(f"{op}: anomaly_maps must be real-valued scores, got dtype {str(maps3.dtype).replace('torch.', '')}")
    H, W = maps3.shape[1], maps3.shape[2]
    if H * W >= 2 ** 31:
        raise ValueError(f"{op}: maps of {H} x {W} pixels are too large (H * W must be < 2^31)")
    return score_tensor(maps3), mask_tensor(op, "gt_masks", masks3)


def score_tensor(t: torch.Tensor) -> torch.Tensor:
    """float32/float64 scores as they are; half precision (exactly representable) in float32;
    integer scores in float64 (exact below 2^53)."""
    if t.dtype in HALF_IN:
        t = t.float()
    elif t.dtype not in FLOAT_IN:
        t = t.double()
    return t.contiguous()


def mask_tensor(op: str, name: str, t: torch.Tensor) -> torch.Tensor:
    """bool/uint8 masks are passed as bytes (values other than 0/1 are reported by the kernel);
    other dtypes must hold only 0 and 1."""
    if t.dtype == torch.bool:
        return t.contiguous().view(torch.uint8)
    if t.dtype == torch.uint8:
        return t.contiguous()
    if t.dtype.is_complex:
        raise TypeError(f"{op}: {name} must be bool or 0/1 integers, got dtype {str(t.dtype).replace('torch.', '')}")
    bad = (t != 0) & (t != 1)
    if bool(bad.any()):
        idx = tuple(bad.nonzero()[0].tolist())
        raise ValueError(f"{op}: {name} must be binary (0/1), found {t[idx].item()!r} at index {idx}")
    return t.to(torch.uint8).contiguous()


def unravel(flat: int, shape) -> tuple:
    return tuple(int(i) for i in np.unravel_index(int(flat), tuple(int(s) for s in shape)))
