"""Textbook farthest point sampling, one cloud at a time."""
import torch

from ._dist import sqdist


def sample_farthest_points(points, lengths=None, K=50, random_start_point=False, *, start_idx=0):
    """Same contract as mentor3ad_ext.sample_farthest_points; O(P*K) per cloud in torch."""
    B, P, D = points.shape
    pts = points.float() if points.dtype in (torch.float16, torch.bfloat16) else points
    lengths = torch.full((B,), P, dtype=torch.int64) if lengths is None else lengths.cpu()
    Ks = K.cpu().tolist() if isinstance(K, torch.Tensor) else [K] * B
    K_max = (max(Ks) if B else 0) if isinstance(K, torch.Tensor) else K
    starts = start_idx.cpu().tolist() if isinstance(start_idx, torch.Tensor) else [start_idx] * B
    idx = torch.full((B, K_max), -1, dtype=torch.int64)
    for b in range(B):
        n = int(lengths[b])
        k = min(Ks[b], n)
        if k == 0:
            continue
        cloud = pts[b, :n]
        if random_start_point:
            cur = int(torch.randint(n, ()))
        else:
            cur = int(starts[b])
        mind = torch.full((n,), float("inf"), dtype=pts.dtype, device=pts.device)
        for s in range(k):
            idx[b, s] = cur
            mind[cur] = -float("inf")
            if s + 1 == k:
                break
            mind = torch.minimum(mind, sqdist(cloud, cloud[cur]))
            # argmax returns the first maximal index: ties go to the lower index.
            cur = int(torch.argmax(mind))
    idx = idx.to(points.device)
    safe = idx.clamp(min=0)
    gathered = points.gather(1, safe[..., None].expand(-1, -1, D)) if P and B else points.new_zeros((B, K_max, D))
    gathered = torch.where((idx >= 0)[..., None], gathered, gathered.new_zeros(()))
    return gathered, idx
