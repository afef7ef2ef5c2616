"""Where normals' and FPFH's time goes, step by step, on the benchmark's cloud (bench/bench_descriptors.py:
100k points, k = 30 normals, FPFH with ~50 neighbours in the radius and max_nn = 100): the
neighbourhood search (with and without the radius bound), the descriptor kernels alone, the whole
calls, then a torch.profiler table of one FPFH call. Issue 7's GPU target is 30x Open3D on the
same machine (H200, 16 cores, 2026-11-27: Open3D 100 ms normals, 514 ms FPFH).

    python scripts/profile_descriptors.py            # CUDA when present, else the CPU (or emulator)
"""
import math
import sys
from pathlib import Path

import torch

import mentor3ad_ext as m
from mentor3ad_ext.ops.fpfh import _fpfh
from mentor3ad_ext.ops.normals import neighbourhoods

from _cuda_timing import median_ms  # this folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_descriptors import fpfh_radius, make_cloud  # noqa: E402


def main(n: int = 100_000) -> int:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pts = make_cloud(n)
    radius = fpfh_radius(pts)
    r2 = radius * radius
    print(f"device {torch.cuda.get_device_name() if device == 'cuda' else device}, n = {n}, radius {radius:.5f}")
    print("| dtype | normals | its search (K = 30) | FPFH | search K = 100 bounded | unbounded | FPFH kernels |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    clouds = [(dtype, pts.to(device, dtype)[None], torch.tensor([n], device=device))
              for dtype in (torch.float32, torch.float64)]
    for dtype, p, lengths in clouds:
        with m.value_checks(False):
            normals = m.estimate_normals(p, k=30)
            t_normals = median_ms(lambda: m.estimate_normals(p, k=30))
            t_search30 = median_ms(lambda: neighbourhoods(p, lengths, 30))
            t_fpfh = median_ms(lambda: m.fpfh(p, normals, radius=radius, max_nn=100))
            t_bounded = median_ms(lambda: neighbourhoods(p, lengths, 100, r2))
            t_unbounded = median_ms(lambda: neighbourhoods(p, lengths, 100))
            idx, dists, order = neighbourhoods(p, lengths, 100, r2)
            t_kernels = median_ms(lambda: _fpfh(p, normals, idx, dists, order, r2))
        print(f"| {str(dtype)[6:]} | {t_normals:.3f} | {t_search30:.3f} | {t_fpfh:.3f} | {t_bounded:.3f} "
              f"| {t_unbounded:.3f} | {t_kernels:.3f} |", flush=True)
    if device == "cuda":
        # The searches both descriptors make, each way: the general plan (two sorts and a home
        # search, _knn_tiles), the self plan the ops take (one sort, _knn_self), and the self
        # plan with its list kind forced: registers are what K <= 32 takes (normals), a warp per
        # query with its list in shared memory what K <= 256 takes (FPFH, bounded at the radius),
        # a thread per query with its list in its output row (32 queries walking together), and
        # the float32 filter with an exact float64 rerank (float64 normals' default). Then the
        # plan alone: a walk bounded at 0.
        from mentor3ad_ext.ops._knn_self import _knn_self
        from mentor3ad_ext.ops.knn import _knn_tiles
        print("| dtype | search | general plan | self plan (default) | thread lists (1) | warp lists (2) "
              "| float32 filter (3) |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for dtype, p, lengths in clouds:
            f64 = dtype == torch.float64
            with m.value_checks(False):
                for name, K, bound in (("normals K = 30", 30, math.inf), ("FPFH K = 100 < r", 100, r2)):
                    t = [median_ms(lambda: _knn_tiles(p, p, lengths, lengths, K, 2, 0, bound))]
                    modes = (0, 1, 2, 3) if f64 and K < 32 and bound == math.inf else (0, 1, 2)
                    t += [median_ms(lambda: _knn_self(p, lengths, K, bound, mode)) for mode in modes]
                    cells = [f"{v:.3f}" for v in t] + [""] * (5 - len(t))  # no filter column: empty
                    print(f"| {str(dtype)[6:]} | {name} | {' | '.join(cells)} |", flush=True)
                t_general = median_ms(lambda: _knn_tiles(p, p, lengths, lengths, 1, 2, 0, 0.0))
                t_self = median_ms(lambda: _knn_self(p, lengths, 1, 0.0, 0))
            print(f"| {str(dtype)[6:]} | plan + a walk bounded at 0 | {t_general:.3f} | {t_self:.3f} | | | |", flush=True)
        p = pts.to(device, torch.float32)[None]
        normals = m.estimate_normals(p, k=30)
        with m.value_checks(False), torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                m.fpfh(p, normals, radius=radius, max_nn=100)
            torch.cuda.synchronize()
        print("FPFH, 3 calls, float32:")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=20, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
