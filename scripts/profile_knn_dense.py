"""kNN on CUDA through the matrix-product filter's batched driver (ops/_knn_dense.py), forced at
every D, against knn_points without it (M3AD_KNN_DENSE=0: the scan in high D; the tiles, block
select or scan in 3-D) and torch cdist + topk: the measurement behind DENSE_MIN_D_CUDA (H200,
2026-11-27). Our two paths are compared bit for bit before timing; CUDA events, medians; then
the filter's kernels by device time (torch.profiler).

    python scripts/profile_knn_dense.py      # on a machine with a CUDA GPU
    MENTOR3AD_CUDA_EMULATOR=1 python scripts/profile_knn_dense.py --small   # dry run of the script
"""
import os
import sys

import torch

import mentor3ad_ext as m
from mentor3ad_ext.ops import _knn_dense

from _cuda_timing import median_ms, profile_device  # this folder


def timer(fn) -> float:
    return median_ms(fn, reps=10, host_reps=2)


def ours(q, p, K: int, dense: bool):
    """knn_points through the filter at any D (dense), or routed as if it did not exist."""
    os.environ["M3AD_KNN_DENSE"] = "1" if dense else "0"
    saved = _knn_dense.DENSE_MIN_D, _knn_dense.DENSE_MIN_D_CUDA
    _knn_dense.DENSE_MIN_D = _knn_dense.DENSE_MIN_D_CUDA = 1
    try:
        return m.knn_points(q, p, K=K)
    finally:
        os.environ.pop("M3AD_KNN_DENSE", None)
        _knn_dense.DENSE_MIN_D, _knn_dense.DENSE_MIN_D_CUDA = saved


def main(small: bool) -> int:
    dev = profile_device("profile_knn_dense")
    if dev is None:
        return 0
    g = torch.Generator(device=dev).manual_seed(0)
    f = 50 if small else 1  # --small: a fiftieth of the queries and points
    # (queries, points, D, K): PatchCore-style memory-bank searches, a self-kNN in 128-D, the D
    # ladder around DENSE_MIN_D = 9 (CPU) and DENSE_MIN_D_CUDA = 20, and 3-D cases where
    # cdist+topk's product beat our routed kernels on the H200 (few queries, large K)
    cases = [(784, 20_000, 1152, 1), (784, 200_000, 1152, 1), (4096, 100_000, 384, 9),
             (16_000, 16_000, 128, 16), (1024, 16_000, 128, 128)]
    cases += [(4096, 16_000, D, 16) for D in (4, 6, 8, 16, 32, 64)]
    cases += [(1024, 16_000, 3, 128), (1024, 16_000, 3, 32), (256, 100_000, 3, 64)]
    print("filter: forced at every D; routed: knn_points without the filter (the scan in high D; the "
          "tiles, the block select or the scan in 3-D)\n")
    print("| queries x points, D, K | filter ms | routed ms | routed / filter | cdist+topk ms | cdist / filter |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    with m.value_checks(False):
        for Q, N, D, K in cases:
            Q, N = max(8, Q // f), max(4 * K + 64, N // f)
            q = torch.randn(1, Q, D, device=dev, generator=g)
            p = torch.randn(1, N, D, device=dev, generator=g)
            a, b = ours(q, p, K, True), ours(q, p, K, False)
            assert torch.equal(a.idx, b.idx) and torch.equal(a.dists, b.dists), (Q, N, D, K)
            t_filter = timer(lambda: ours(q, p, K, True))
            t_routed = timer(lambda: ours(q, p, K, False))
            t_cdist = timer(lambda: torch.cdist(q, p).topk(K, dim=2, largest=False))
            print(f"| {Q} x {N}, {D}, {K} | {t_filter:.3f} | {t_routed:.3f} | {t_routed / t_filter:.2f}x "
                  f"| {t_cdist:.3f} | {t_cdist / t_filter:.2f}x |", flush=True)
        # where the filter's time goes: its kernels, by device time
        for Q, N, D, K in [(784, 20_000, 1152, 1), (4096, 16_000, 16, 16)] if dev.type == "cuda" else []:
            Q, N = max(8, Q // f), max(4 * K + 64, N // f)
            q = torch.randn(1, Q, D, device=dev, generator=g)
            p = torch.randn(1, N, D, device=dev, generator=g)
            ours(q, p, K, True)
            acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            with torch.profiler.profile(activities=acts) as prof:
                for _ in range(3):
                    ours(q, p, K, True)
                torch.cuda.synchronize()
            print(f"\nfilter kernels, 3 calls of {Q} x {N}, D = {D}, K = {K}:")
            print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=14, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main("--small" in sys.argv))
