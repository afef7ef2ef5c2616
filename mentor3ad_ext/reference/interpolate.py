"""Plain-torch weighted gather, IDW interpolation and Point-MAE grouping."""
import torch

from .fps import sample_farthest_points
from .knn import knn_gather, knn_points


def weighted_gather(x, idx, weights):
    """Materialises (B, R, K, C): the obvious way."""
    g = knn_gather(x, idx)
    return (g * weights[..., None]).sum(2)


def interpolate_features(query, ref, ref_features, k=3, lengths_query=None, lengths_ref=None, *,
                         power=1.0, eps=1e-8):
    nn = knn_points(query, ref, lengths_query, lengths_ref, K=k)
    valid = nn.idx >= 0
    d = nn.dists.clamp_min(1e-30).pow(power / 2.0)
    w = torch.where(valid, 1.0 / (d + eps), torch.zeros_like(d))
    total = w.sum(-1, keepdim=True)
    w = w / torch.where(total > 0, total, torch.ones_like(total))
    return weighted_gather(ref_features, nn.idx, w.to(ref_features.dtype))


def group_points(points, num_groups, group_size, lengths=None, *, start_idx=0, random_start_point=False):
    centers, cidx = sample_farthest_points(points, lengths, num_groups, random_start_point, start_idx=start_idx)
    nn = knn_points(centers, points, (cidx >= 0).sum(1), lengths, K=group_size)
    rel = knn_gather(points, nn.idx) - centers[:, :, None, :]
    rel = torch.where((nn.idx >= 0)[..., None], rel, torch.zeros_like(rel))
    return rel, centers, nn.idx
