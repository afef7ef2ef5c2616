"""3D features onto the pixel grid: IDW k-NN interpolation at every valid pixel of an organized
cloud, average-pooled over the valid pixels of each output cell, in one sparse product.

The interpolation weights of all pixels of a cell are folded into one row of a weighted gather
over the G centers, so no (B, H*W, C) tensor ever exists: memory is O(B*H*W*k + B*h*w*C).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from . import _checks as ck
from ._contract import INT64, Contract
from ._library import custom_op
from ._launch import C, dtype_tag, host_kernels, ptr
from .interpolate import idw_weights
from .knn import knn_points
from .weighted_gather import weighted_gather

OP = "interpolate_to_grid"


def _out_size(out_size, H: int, W: int) -> tuple[int, int]:
    if out_size is None:
        return H, W
    if isinstance(out_size, int):
        out_size = (out_size, out_size)
    if not (isinstance(out_size, Sequence) and len(out_size) == 2 and all(isinstance(v, int) for v in out_size)):
        raise TypeError(f"{OP}: out_size must be an int or a pair of ints (h, w), got {out_size!r}")
    h, w = out_size
    if h < 1 or w < 1 or h > H or w > W or H % h or W % w:
        raise ValueError(f"{OP}: out_size {tuple(out_size)} must divide the grid {(H, W)} exactly "
                         "(each output cell pools an (H/h) x (W/w) block of pixels)")
    return h, w


def interpolate_to_grid(
    centers: torch.Tensor,
    center_features: torch.Tensor,
    xyz: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    k: int = 3,
    out_size=None,
    *,
    lengths_centers: Optional[torch.Tensor] = None,
    power: float = 1.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Spread center features to every valid pixel and pool them onto an (h, w) grid.

    Args:
        centers: (B, G, 3) group centers; center_features: (B, G, C).
        xyz: (B, H, W, 3) organized point cloud; valid: (B, H, W) bool (default: pixels with any
            non-zero coordinate).
        k: nearest centers per pixel; power/eps: weights 1 / (dist**power + eps), normalised.
        out_size: (h, w) dividing (H, W); default (H, W).
        lengths_centers: optional (B,) valid centers per cloud.

    Returns:
        (B, C, h, w): per cell, the mean over its valid pixels of the interpolated features; 0 for
        cells without a valid pixel. Differentiable w.r.t. center_features, centers and xyz (through
        the weights; the choice of the k nearest centers is piecewise constant).
    """
    k = ck.check_positive_int(OP, "k", k)
    ck.check_points(OP, "centers", centers, allow_half=True, dim=3)
    ck.check_tensor(OP, "center_features", center_features, ndim=3, dtypes=ck.FLOAT_DTYPES + ck.HALF_DTYPES,
                    shape_hint="(B, G, C)")
    ck.check_tensor(OP, "xyz", xyz, ndim=4, dtypes=ck.FLOAT_DTYPES + ck.HALF_DTYPES, shape_hint="(B, H, W, 3)")
    ck.check_same_device(OP, centers=centers, center_features=center_features, xyz=xyz, valid=valid)
    B, G, _ = centers.shape
    if center_features.shape[:2] != (B, G):
        raise ValueError(f"{OP}: center_features must be (B, G, C) matching centers {ck.shape_str(centers)}, "
                         f"got {ck.shape_str(center_features)}")
    if xyz.shape[0] != B or xyz.shape[3] != 3:
        raise ValueError(f"{OP}: xyz must be (B, H, W, 3) with B = {B} as in centers, got {ck.shape_str(xyz)}")
    _, H, W, _ = xyz.shape
    h, w = _out_size(out_size, H, W)
    if valid is None:
        valid = (xyz != 0).any(-1)
    else:
        ck.check_tensor(OP, "valid", valid, dtypes=(torch.bool,), shape_hint="(B, H, W)")
        if valid.shape != (B, H, W):
            raise ValueError(f"{OP}: valid must have shape {(B, H, W)} like xyz {ck.shape_str(xyz)}, "
                             f"got {ck.shape_str(valid)}")
    ck.check_finite(OP, "xyz", xyz)

    # Valid pixels first, in pixel order, so knn sees a padded cloud of nvalid query points.
    HW = H * W
    flat_valid = valid.reshape(B, HW)
    order = torch.sort((~flat_valid).to(torch.uint8), dim=1, stable=True).indices
    packed = xyz.reshape(B, HW, 3).gather(1, order[..., None].expand(-1, -1, 3))
    k = ck.at_most_points(k, G)
    nn = knn_points(packed, centers, flat_valid.sum(1), lengths_centers, K=k)
    feats = center_features.float() if center_features.dtype in ck.HALF_DTYPES else center_features
    wts = idw_weights(nn.dists, nn.idx, float(power), float(eps)).to(feats.dtype)
    # Back to pixel order (a permutation: a gather with the inverse order, no scatter).
    inv = torch.argsort(order, dim=1)
    pix_idx = nn.idx.gather(1, inv[..., None].expand(-1, -1, k))
    pix_w = wts.gather(1, inv[..., None].expand(-1, -1, k))

    # One row per output cell holding the (pixel, neighbour) entries of its block.
    sh, sw = H // h, W // w
    cells = lambda t: t.reshape(B, h, sh, w, sw, k).permute(0, 1, 3, 2, 4, 5).reshape(B, h * w, sh * sw * k)  # noqa: E731
    count = flat_valid.reshape(B, h, sh, w, sw).sum((2, 4)).reshape(B, h * w, 1)
    cell_idx, cell_w = _coalesce(cells(pix_idx), cells(pix_w) / count.clamp_min(1).to(pix_w.dtype), G)
    out = weighted_gather(feats, cell_idx, cell_w)
    return out.transpose(1, 2).reshape(B, feats.shape[2], h, w)


@custom_op("mentor3ad::coalesce_count", mutates_args=())
def _coalesce_count(idx: torch.Tensor, num_sources: int) -> torch.Tensor:
    c = Contract("coalesce_count")
    idx = c.tensor("idx", idx, ("B", "R", "E"), INT64, cpu=True)
    num_sources = c.integer("num_sources", num_sources)
    B, R, E = idx.shape
    distinct = torch.empty((B, R), dtype=torch.int64)
    C().coalesce_rows(ptr(idx), 0, 0, 0, 0, ptr(distinct), B, R, E, 0, num_sources, True, 0)
    return distinct


@_coalesce_count.register_fake
def _(idx, num_sources):
    return idx.new_empty(idx.shape[:2])


@custom_op("mentor3ad::coalesce_rows", mutates_args=())
def _coalesce_rows(idx: torch.Tensor, w: torch.Tensor, num_sources: int, U: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # (rows with more than U distinct sources are cut at U by the kernel, never overflowed)
    c = Contract("coalesce_rows")
    idx = c.tensor("idx", idx, ("B", "R", "E"), INT64, cpu=True)
    w = c.tensor("w", w, ("B", "R", "E"))
    num_sources, U = c.integer("num_sources", num_sources), c.integer("U", U)
    B, R, E = idx.shape
    out_idx = torch.empty((B, R, U), dtype=torch.int64)
    out_w = torch.empty((B, R, U), dtype=w.dtype)
    slot = torch.empty((B, R, E), dtype=torch.int64)
    C().coalesce_rows(ptr(idx), ptr(w), ptr(out_idx), ptr(out_w), ptr(slot), 0, B, R, E, U, num_sources, False,
                      dtype_tag(w))
    return out_idx, out_w, slot


@_coalesce_rows.register_fake
def _(idx, w, num_sources, U):
    B, R, E = idx.shape
    return idx.new_empty((B, R, U)), w.new_empty((B, R, U)), idx.new_empty((B, R, E))


def _coalesce_setup(ctx, inputs, output):
    ctx.save_for_backward(output[2])


def _coalesce_backward(ctx, g_idx, g_w, g_slot):
    (slot,) = ctx.saved_tensors
    grad_w = torch.where(slot >= 0, g_w.gather(-1, slot.clamp_min(0)), g_w.new_zeros(()))
    return None, grad_w, None, None


_coalesce_rows.register_autograd(_coalesce_backward, setup_context=_coalesce_setup)


def _coalesce(idx: torch.Tensor, w: torch.Tensor, num_sources: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge entries of each row naming the same source, summing their weights (CPU).

    A cell of 8x8 pixels with k=3 holds 192 entries but touches only the few centers near it;
    merging first makes the feature gather an order of magnitude cheaper. On CUDA the rows are
    gathered as they are (the GPU has the bandwidth; no data-dependent sizes, no host sync).
    """
    if not host_kernels(idx) or idx.shape[-1] <= 1 or idx.numel() == 0:
        return idx, w
    idx = idx.contiguous()
    U = max(int(_coalesce_count(idx, num_sources).max()), 1)
    out_idx, out_w, _ = _coalesce_rows(idx, w.contiguous(), num_sources, U)
    return out_idx, out_w
