"""Plain-torch interpolate_to_grid: dense (H*W, C) features per image, then masked average pooling."""
import torch

from ._dist import sqdist


def interpolate_to_grid(centers, center_features, xyz, valid=None, k=3, out_size=None, *,
                        lengths_centers=None, power=1.0, eps=1e-8):
    B, G, _ = centers.shape
    _, H, W, _ = xyz.shape
    C = center_features.shape[2]
    h, w = (H, W) if out_size is None else ((out_size, out_size) if isinstance(out_size, int) else out_size)
    if valid is None:
        valid = (xyz != 0).any(-1)
    feats = center_features.float() if center_features.dtype in (torch.float16, torch.bfloat16) else center_features
    dense = feats.new_zeros((B, H * W, C))
    for b in range(B):
        g = G if lengths_centers is None else int(lengths_centers[b])
        pix = valid[b].reshape(-1).nonzero().flatten()
        if g == 0 or len(pix) == 0:
            continue
        q = xyz[b].reshape(-1, 3)[pix].to(feats.dtype)
        d = sqdist(q[:, None, :], centers[b, :g][None].to(feats.dtype))  # (n, g)
        kk = min(k, g)
        nd, ni = torch.sort(d, dim=1, stable=True)
        nd, ni = nd[:, :kk], ni[:, :kk]
        wt = 1.0 / (nd.clamp_min(1e-30).pow(power / 2.0) + eps)
        wt = wt / wt.sum(1, keepdim=True)
        dense[b, pix] = (feats[b, :g][ni] * wt[..., None]).sum(1)
    dense = dense.transpose(1, 2).reshape(B, C, H, W)
    mask = valid[:, None].to(dense.dtype)
    total = torch.nn.functional.avg_pool2d(dense * mask, (H // h, W // w), divisor_override=1)
    count = torch.nn.functional.avg_pool2d(mask, (H // h, W // w), divisor_override=1)
    return total / count.clamp_min(1)
