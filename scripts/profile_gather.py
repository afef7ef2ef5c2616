"""The CUDA weighted gathers (grid_to_points, knn_gather, interpolation forward) on the two
segment-reduce kernels: the warp-per-row gather (csrc/scatter/scatter_cuda.cu, gather_rows_kernel)
and the tile kernel it replaces for groups of <= 8 entries between channel-contiguous rows
(M3AD_GATHER_ROWS=tiles), next to F.grid_sample; value checks off, CUDA events, medians. Both
kernels' outputs are compared bit for bit before timing.

    python scripts/profile_gather.py      # on a machine with a CUDA GPU
    MENTOR3AD_CUDA_EMULATOR=1 python scripts/profile_gather.py --small   # dry run of the script
"""
import os
import sys

import torch
import torch.nn.functional as F

import mentor3ad_ext as m
from mentor3ad_ext.ops import _scatter as S

from _cuda_timing import median_ms as timer, profile_device  # this folder


def both_kernels(fn):
    """(ms on the warp gather, ms on the tile kernel), after checking they agree."""
    os.environ.pop("M3AD_GATHER_ROWS", None)
    warp = fn()
    os.environ["M3AD_GATHER_ROWS"] = "tiles"
    try:
        tiles = fn()
        assert torch.equal(warp, tiles), "the two gather kernels disagree"
        t_tiles = timer(fn)
    finally:
        os.environ.pop("M3AD_GATHER_ROWS", None)
    return timer(fn), t_tiles


def main(small: bool) -> int:
    dev = profile_device("profile_gather")
    if dev is None:
        return 0
    g = torch.Generator(device=dev).manual_seed(0)
    rows = []
    f = 100 if small else 1  # --small: the same cases, a hundredth of the rows

    # grid_to_points as the model and bench_projection use it: B=8, 50k points, C=1152, 28 x 28.
    B, N, C, H, W = 8, 50_000 // f, 1152, 28, 28
    grid = torch.randn(B, C, H, W, device=dev, generator=g)
    uv = torch.rand(B, N, 2, device=dev, generator=g) * torch.tensor([W, H], device=dev)
    warp, tiles = both_kernels(lambda: m.grid_to_points(grid, uv))
    norm = uv / torch.tensor([W, H], device=dev) * 2 - 1
    peer = timer(lambda: F.grid_sample(grid, norm[:, None], align_corners=False))
    peer_c = timer(lambda: F.grid_sample(grid, norm[:, None], align_corners=False)[:, :, 0].transpose(1, 2)
                            .contiguous())
    rows.append(("grid_to_points bilinear B=8 N=50k C=1152 28x28", warp, tiles,
                 f"F.grid_sample {peer:.3f} ms (its (B, C, 1, N) view), {peer_c:.3f} ms made (B, N, C)"))
    warp, tiles = both_kernels(lambda: m.grid_to_points(grid, uv, mode="nearest"))
    rows.append(("grid_to_points nearest, same sizes", warp, tiles, ""))

    # knn_gather of group features (Point-MAE sizes) and a 3-NN interpolation's gather.
    feats = torch.randn(4, 1024, 384, device=dev, generator=g)
    idx = torch.randint(0, 1024, (4, 2048 // f, 8), device=dev, generator=g)
    warp, tiles = both_kernels(lambda: m.knn_gather(feats, idx))
    rows.append(("knn_gather B=4 1024 rows C=384, 2048 x K=8", warp, tiles, ""))
    src = torch.randn(2, 4096, 1152, device=dev, generator=g)
    idx3 = torch.randint(0, 4096, (2, 100_000 // f * 3), device=dev, generator=g)
    w3 = torch.rand(2, 100_000 // f * 3, device=dev, generator=g)
    warp, tiles = both_kernels(lambda: S.gather_rows(src, idx3, 3, weights=w3))
    rows.append(("3-NN weighted gather B=2 100k rows C=1152", warp, tiles, ""))

    where = torch.cuda.get_device_name() if dev.type == "cuda" else "CUDA emulator (timings meaningless)"
    print(f"{where}; ms, CUDA events, medians of 20{'; --small sizes' if small else ''}")
    print("| case | warp per row | tile kernel | tile / warp | peer |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, w, t, peer_note in rows:
        print(f"| {name} | {w:.3f} | {t:.3f} | {t / w:.2f}x | {peer_note} |")
    return 0


if __name__ == "__main__":
    with m.value_checks(False):
        sys.exit(main("--small" in sys.argv[1:]))
