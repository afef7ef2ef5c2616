"""Farthest point sampling (pytorch3d-compatible `sample_farthest_points`)."""
from __future__ import annotations

from typing import Optional, Union

import torch

from . import _checks as ck
from ._contract import INT64, Contract
from ._library import custom_op
from ._launch import C, device_args, dtype_tag, ptr, workspace
from .gather import masked_gather

OP = "sample_farthest_points"


@custom_op("mentor3ad::fps", mutates_args=())
def _fps(points: torch.Tensor, lengths: torch.Tensor, k: torch.Tensor, start: torch.Tensor, K_max: int) -> torch.Tensor:
    # The kernels clamp lengths and k and take start modulo the cloud length.
    c = Contract("fps")
    points = c.tensor("points", points, ("B", "P", "D"))
    c.at_least("D", 1)
    lengths, k, start = (c.tensor(n, t, ("B",), INT64) for n, t in (("lengths", lengths), ("k", k), ("start", start)))
    K_max = c.integer("K_max", K_max)
    B, P, D = points.shape
    idx = torch.empty((B, K_max), dtype=torch.int64, device=points.device)
    if B == 0 or K_max == 0:
        return idx
    dev, stream = device_args(points)
    ws = workspace(C().fps_workspace_bytes(B, P, dtype_tag(points)), points) if dev >= 0 else None
    C().fps(ptr(points), ptr(lengths), ptr(k), ptr(start), ptr(idx), ptr(ws), B, P, D, K_max,
            dtype_tag(points), dev, stream)
    return idx


@_fps.register_fake
def _(points, lengths, k, start, K_max):
    return points.new_empty((points.shape[0], K_max), dtype=torch.int64)


def sample_farthest_points(
    points: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    K: Union[int, torch.Tensor] = 50,
    random_start_point: bool = False,
    *,
    start_idx: Union[int, torch.Tensor] = 0,
):
    """Farthest point sampling, in the exact order of the textbook algorithm.

    Args:
        points: (B, P, D) float32/float64 (float16/bfloat16 are computed in float32).
        lengths: optional (B,) int64 number of valid points per cloud (default: P).
        K: samples per cloud, an int or a (B,) integer tensor (a CUDA tensor costs one sync to
            size the output).
        random_start_point: start each cloud at a uniformly random valid point (torch RNG).
        start_idx: keyword-only first index, an int or a (B,) tensor; must be < the cloud length.

    Returns:
        (sampled_points (B, K_max, D), idx (B, K_max) int64). Sample s of cloud b is the point
        farthest from samples 0..s-1 (squared Euclidean distance; ties to the lower index;
        already-chosen points never repeat). Entries past min(K[b], lengths[b]) are idx -1 and
        zero points, as in pytorch3d. Never differentiable through idx; sampled_points carry the
        gradient of the gathered points.
    """
    ck.check_points(OP, "points", points, allow_half=True)
    B, P, D = points.shape
    device = points.device
    lengths = ck.check_lengths(OP, "lengths", lengths, B, P, device)
    if isinstance(K, torch.Tensor):
        if K.dtype.is_floating_point or K.dtype == torch.bool:
            raise TypeError(f"{OP}: K must be an int or an integer tensor, got {K.dtype}")
        if K.shape != (B,):
            raise ValueError(f"{OP}: a K tensor must have shape ({B},) (one per cloud), got {ck.shape_str(K)}")
        if K.device != device:
            raise ValueError(f"{OP}: K is on {K.device} but points are on {device}")
        k = K.to(torch.int64).contiguous()
        K_max = int(k.max()) if B else 0
        if B and int(k.min()) < 1:
            raise ValueError(f"{OP}: every K must be >= 1, got min {int(k.min())}")
    else:
        K_max = ck.check_positive_int(OP, "K", K)
        k = torch.full((B,), K_max, dtype=torch.int64, device=device)
    if random_start_point and not isinstance(start_idx, torch.Tensor) and start_idx != 0:
        raise ValueError(f"{OP}: give either random_start_point=True or start_idx, not both")
    if random_start_point:
        start = (torch.rand(B, device=device, dtype=torch.float64) * lengths).floor().to(torch.int64)
    else:
        start = _start_tensor(start_idx, B, device)
        if ck.value_checks_enabled() and B:
            nonempty = lengths > 0
            bad = (start < 0) | (nonempty & (start >= lengths))
            if bool(bad.any()):
                b = int(bad.nonzero()[0, 0])
                raise ValueError(f"{OP}: start_idx must lie in [0, lengths[b]); cloud {b} has start "
                                 f"{int(start[b])} and length {int(lengths[b])}")
    ck.check_finite(OP, "points", points)
    pts = ck.as_float_input(points)
    idx = _fps(pts, lengths, k, start, K_max)
    return masked_gather(points, idx), idx


def _start_tensor(start_idx, B: int, device: torch.device) -> torch.Tensor:
    if isinstance(start_idx, torch.Tensor):
        if start_idx.dtype.is_floating_point or start_idx.dtype == torch.bool:
            raise TypeError(f"{OP}: start_idx must be integer, got {start_idx.dtype}")
        if start_idx.dim() == 0:
            start_idx = start_idx.expand(B)
        if start_idx.shape != (B,):
            raise ValueError(f"{OP}: a start_idx tensor must have shape ({B},), got {ck.shape_str(start_idx)}")
        return start_idx.to(device=device, dtype=torch.int64).contiguous()
    if isinstance(start_idx, bool) or not isinstance(start_idx, int):
        raise TypeError(f"{OP}: start_idx must be an int or a tensor, got {type(start_idx).__name__}")
    return torch.full((B,), start_idx, dtype=torch.int64, device=device)
