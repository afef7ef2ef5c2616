"""3D features onto the pixel grid: IDW k-NN interpolation at every valid pixel of an organized
cloud, average-pooled over the valid pixels of each output cell, in one sparse product.

The interpolation weights of all pixels of a cell are folded into one row of a weighted gather
over the G centers, so no (B, H*W, C) tensor ever exists: memory is O(B*H*W*k + B*h*w*C).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from . import _checks as ck
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
    cell_w = cells(pix_w) / count.clamp_min(1).to(pix_w.dtype)
    out = weighted_gather(feats, cells(pix_idx).contiguous(), cell_w.contiguous())
    return out.transpose(1, 2).reshape(B, feats.shape[2], h, w)
