"""Plain-torch point <-> pixel projection (scatter_add / scatter_reduce / grid_sample).

Same contracts as mentor3ad_ext.points_to_grid / grid_to_points; these materialise (B, H*W, C)
and use torch's (atomic on CUDA) scatters, which is exactly what the fused ops avoid.
"""
import torch
import torch.nn.functional as F

_HALF = (torch.float16, torch.bfloat16)


def points_to_grid(features, pixel_index, height, width, reduce="mean", return_counts=False):
    B, N, C = features.shape
    f = features.float() if features.dtype in _HALF else features
    R = height * width
    valid = pixel_index >= 0
    idx = pixel_index.clamp(min=0)
    idx_c = idx[..., None].expand(B, N, C)
    counts = torch.zeros((B, R), dtype=torch.int64, device=f.device).scatter_add_(1, idx, valid.long())
    if reduce in ("sum", "mean"):
        fz = torch.where(valid[..., None], f, f.new_zeros(()))
        out = f.new_zeros((B, R, C)).scatter_add(1, idx_c, fz)
        if reduce == "mean":
            out = out / counts.clamp(min=1)[..., None].to(f.dtype)
    elif reduce == "max":
        neg = f.new_full((), float("-inf"))
        amax = f.new_full((B, R, C), float("-inf")).scatter_reduce(
            1, idx_c, torch.where(valid[..., None], f, neg), "amax", include_self=True)
        # Arg-max with ties to the lowest point index; the output gathers that point's feature,
        # so the gradient goes to it alone (torch's amax backward would split it among ties).
        is_max = valid[..., None] & (f == amax.gather(1, idx_c))
        n = torch.arange(N, device=f.device).view(1, N, 1).expand(B, N, C)
        arg = torch.full((B, R, C), N, dtype=torch.int64, device=f.device).scatter_reduce(
            1, idx_c, torch.where(is_max, n, N), "amin", include_self=True)
        has = arg < N
        out = f.gather(1, arg.clamp(max=max(N - 1, 0))) if N else f.new_zeros((B, R, C))
        out = torch.where(has, out, f.new_zeros(()))
    else:
        raise ValueError(f"reduce must be sum, mean or max, got {reduce!r}")
    out = out.permute(0, 2, 1).reshape(B, C, height, width).to(features.dtype)
    if return_counts:
        return out, counts.view(B, height, width)
    return out


def grid_to_points(grid, uv, mode="bilinear", align_corners=False):
    g = grid.float() if grid.dtype in _HALF else grid
    u = uv.to(g.dtype)
    B, C, H, W = g.shape
    if align_corners:
        # A size-1 dimension: grid_sample would map every coordinate to the single pixel; our
        # contract keeps the coordinate (pixel centre at 0, zero padding around it). A zero
        # column / row appended makes grid_sample follow that contract.
        g = F.pad(g, (0, 1 if W == 1 else 0, 0, 1 if H == 1 else 0))
        size = torch.tensor([max(W, 2) - 1, max(H, 2) - 1], dtype=g.dtype, device=g.device)
    else:
        size = torch.tensor([W, H], dtype=g.dtype, device=g.device)
    norm = 2 * u / size - 1
    out = F.grid_sample(g, norm[:, None], mode=mode, padding_mode="zeros", align_corners=align_corners)
    return out[:, :, 0].transpose(1, 2).to(grid.dtype)
