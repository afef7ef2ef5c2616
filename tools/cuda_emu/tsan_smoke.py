"""Every CUDA kernel once, on small inputs, for the emulator's ThreadSanitizer build.

TSan's cost grows with the number of CUDA threads that synchronise, so the full test suite is
far too slow under it; this touches every kernel and path (FPS single-block, resident and
multi-block, kNN thread/warp/large-K/block select and the overflow fill, the self-search and its
float32 filter, ball query thread/warp,
metrics, scatter plans, reductions and warp-per-row gathers, projection, normals, FPFH, interpolate_to_grid) with outputs checked against the
CPU kernels' results computed first. See README.md here for the command line.
"""
import torch

import mentor3ad_ext as m
from mentor3ad_ext.ops import _launch

torch.manual_seed(0)
torch.set_num_threads(1)


def both(fn):
    """fn() on the emulated CUDA kernels, then on the CPU kernels; results must be equal."""
    got = fn()
    _launch.EMULATED_CUDA = False  # same module, device -1: its CPU kernels
    try:
        want = fn()
    finally:
        _launch.EMULATED_CUDA = True
    flat_g = got if isinstance(got, (tuple, list)) else (got,)
    flat_w = want if isinstance(want, (tuple, list)) else (want,)
    for g, w in zip(flat_g, flat_w):
        if isinstance(g, torch.Tensor):
            # float32 sums may round differently where the CPU path merges rows first.
            tol = 1e-5 if g.dtype == torch.float32 else 1e-9
            err = (g.double() - w.double()).abs().max().item() if g.numel() else 0.0
            assert torch.allclose(g.double(), w.double(), rtol=tol, atol=tol), (fn.__name__, err)
        else:
            assert abs(g - w) < 1e-12, fn.__name__


# Inputs are made once: every case runs twice and must see the same data.
x = torch.rand(2, 700, 3)
mid = torch.rand(1, 3000, 3)
big = torch.rand(1, 33_000, 3)
grid = torch.rand(2, 64, 64, 3)
maps, masks = torch.rand(3, 40, 40), torch.rand(3, 40, 40) > 0.7
feats = torch.randn(2, 300, 8, dtype=torch.float64)
pix = torch.randint(-1, 36, (2, 300))
image = torch.randn(2, 8, 6, 6, dtype=torch.float64)
uv = torch.rand(2, 50, 2, dtype=torch.float64) * 6
wide = torch.randn(2, 40, 6, 6, dtype=torch.float64)  # >= 32 channels: the warp-per-row gather
far = x.clone()
far[:, ::3] = 2e38  # distances overflow to inf: the overflow fill kernel
centers, center_feats = torch.rand(2, 32, 3), torch.randn(2, 32, 5)


def fps_small():
    return m.sample_farthest_points(x, K=16)[1]


def fps_resident():
    return m.sample_farthest_points(mid, K=6)[1]


def fps_multi_block():
    return m.sample_farthest_points(big, K=4)[1]


def knn_paths():
    from mentor3ad_ext.ops.knn import SELECT_NEVER, _knn_scan, _knn_tiles

    dup = torch.cat([x[:, :350], x[:, :350]], 1)  # duplicates: the block select splits index bits
    l1, l2 = torch.tensor([20, 13]), torch.tensor([700, 650])
    return (m.knn_points(x[:, :40], x, K=8).idx, m.knn_points(x[:, :40], x[:, :100], K=3).idx,
            m.knn_points(x[:, :20], x, K=40).idx, m.knn_points(x[:, :3], dup, K=100).idx,  # block select
            _knn_scan(x[:, :20], x, None, None, 40, 2, SELECT_NEVER)[1],  # warp lists (sorted when full)
            _knn_scan(x[:, :20], far, None, None, 600, 2, SELECT_NEVER)[1],  # overflowed distances
            _knn_tiles(x[:, :20], x, l1, l2, 40, 2, 2)[1],  # the tiles' warp lists, unbounded and bounded
            _knn_tiles(x[:, :20], x, l1, l2, 40, 2, 2, 0.01)[1])


def knn_self_paths():
    # The descriptors' self-search (one plan) and its float32 filter: the float32 search, the
    # rerank and the float64 search of the rows it defers (the lattice's ties).
    import math

    from mentor3ad_ext.ops._knn_self import _knn_self

    lat = torch.cat([(x[:1] * 4).round(), x[:1]], 1).double()
    lengths = torch.tensor([1390])
    return _knn_self(lat, lengths, 30, math.inf, 3)[:2] + _knn_self(x, torch.tensor([700, 650]), 12, 0.01, 0)[:2]


def ball_paths():
    return m.ball_query(x[:, :40], x, K=6, radius=0.2).idx, m.ball_query(x[:, :40], x[:, :100], K=6, radius=0.3).idx


def metrics():
    return m.aupro(maps, masks), m.pixel_auroc(maps, masks)


def scatter_and_projection():
    f = feats.clone().requires_grad_()
    outs = []
    for reduce in ("sum", "mean", "max"):
        g = m.points_to_grid(f, pix, 6, 6, reduce=reduce)
        (gr,) = torch.autograd.grad(g.square().sum(), f)
        outs += [g.detach(), gr]
    img = image.clone().requires_grad_()
    s = m.grid_to_points(img, uv)
    (gi,) = torch.autograd.grad(s.square().sum(), img)
    return outs + [s.detach(), gi, m.grid_to_points(wide, uv), m.grid_to_points(wide, uv, mode="nearest")]


def descriptors():
    n = m.estimate_normals(x, k=10)
    return n, m.fpfh(x, n, radius=0.15, max_nn=20)


def interpolate_grid():
    return m.interpolate_to_grid(centers, center_feats, grid, k=3, out_size=(8, 8))


for case in (fps_small, fps_resident, fps_multi_block, knn_paths, knn_self_paths, ball_paths, metrics,
             scatter_and_projection, descriptors, interpolate_grid):
    both(case)
    print("ok", case.__name__, flush=True)
