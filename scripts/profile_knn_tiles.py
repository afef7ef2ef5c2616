"""Where the CUDA kNN's time goes: the sorted-tiles plan (torch ops), its kernel alone, the whole
call, the index-order scan it replaces and the block select (one block per query, radix select;
csrc/knn/knn_select_cuda.cu), per size; then a torch.profiler table of one call. The whole call
takes whichever path the rules pick (tiles: ops/knn.py tiles_pay; block select:
csrc/knn/knn_select.h); the block select's answer is checked against the scan's before timing.

    python scripts/profile_knn_tiles.py       # on a machine with a CUDA GPU
    python scripts/profile_knn_tiles.py self  # the cloud-against-itself tables only
"""
import math
import sys

import torch

import mentor3ad_ext as m
from mentor3ad_ext.ops import knn as knn_op
from mentor3ad_ext.ops._tiles import general_plan as plan, tiles_kernel

from _cuda_timing import cuda_median_ms  # this folder


timed = cuda_median_ms


def kernel(pl, l1, l2, d, i, K, list_mode=0, max_dist=math.inf):
    """The sorted tiles' kernel alone, on a plan of general_plan."""
    p1s, p2s, order1, order2, boxes, supers, home = pl
    tiles_kernel(d, i, p1s, p2s, l1, l2, order1, order2, boxes, supers, home, K, 2, list_mode, max_dist)


def main():
    torch.manual_seed(0)
    only_self = sys.argv[1:] == ["self"]  # just the self-plan tables (the first table takes minutes)
    # FPFH's search first (100k x 100k, K = 100). The warp lists append to shared memory and sort
    # when full since 2026-11-27 (csrc/knn/warp_list.cuh); before, at 4096 queries over 100k, they
    # took 0.79 ms, 1/24 of the thread lists' time (H200, bench/results/nvidia-h200-2026-11-27-profiles.md)
    cases = [(100_000, 100_000, 100), (100_000, 100_000, 30), (16_000, 1024, 128), (100_000, 4096, 100),
             (16_000, 256, 512), (16_000, 1024, 1000), (100_000, 1024, 64), (100_000, 4096, 32),
             (16_000, 16_000, 16), (1_000_000, 100_000, 16)]
    # bounded: the kernel stopped at the median distance of the (K/2)-th neighbour, as normals and
    # FPFH with a radius holding ~K/2 points search (KnnTilesParams::max_dist)
    print("| N | Q | K | whole call | plan | kernel | kernel, thread lists | kernel, warp lists "
          "| kernel, bounded | index-order scan | block select | cdist+topk |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for N, Q, K in [] if only_self else cases:
        p2 = torch.rand(1, N, 3, device="cuda")
        p1 = p2[:, :Q].clone() if Q == N else torch.rand(1, Q, 3, device="cuda")
        l1 = torch.tensor([Q], device="cuda")
        l2 = torch.tensor([N], device="cuda")
        with m.value_checks(False):
            whole = timed(lambda: m.knn_points(p1, p2, l1, l2, K=K))
            pl = plan(p1, p2, l1, l2)
            t_plan = timed(lambda: plan(p1, p2, l1, l2))
            d = torch.empty(1, Q, K, device="cuda")
            i = torch.empty(1, Q, K, dtype=torch.int64, device="cuda")
            t_kernel = timed(lambda: kernel(pl, l1, l2, d, i, K))
            # K > 32: the two list keepers, whichever the size picks (K <= 32 always uses registers)
            t_thread = timed(lambda: kernel(pl, l1, l2, d, i, K, 1), reps=5) if K > 32 else float("nan")
            t_warp = float("nan")
            if 32 < K <= 256:  # kWarpListMaxK; checked against the thread lists before timing
                kernel(pl, l1, l2, d, i, K, 1)
                want = d.clone(), i.clone()
                kernel(pl, l1, l2, d, i, K, 2)
                assert torch.equal(i, want[1]) and torch.equal(d, want[0]), (N, Q, K)
                t_warp = timed(lambda: kernel(pl, l1, l2, d, i, K, 2), reps=5)
            kernel(pl, l1, l2, d, i, K)
            bound = float(d[..., K // 2].median())
            t_bounded = timed(lambda: kernel(pl, l1, l2, d, i, K, 0, bound))
            scan_out = knn_op._knn_scan(p1, p2, l1, l2, K, 2, knn_op.SELECT_NEVER)
            scan = timed(lambda: knn_op._knn_scan(p1, p2, l1, l2, K, 2, knn_op.SELECT_NEVER), reps=3)
            t_select = float("nan")
            if K <= 2048:  # kBlockSelectMaxK
                sel = knn_op._knn_scan(p1, p2, l1, l2, K, 2, knn_op.SELECT_ALWAYS)
                assert torch.equal(sel[1], scan_out[1]) and torch.equal(sel[0], scan_out[0]), (N, Q, K)
                t_select = timed(lambda: knn_op._knn_scan(p1, p2, l1, l2, K, 2, knn_op.SELECT_ALWAYS), reps=5)
        cd = timed(lambda: torch.cdist(p1, p2).topk(K, dim=-1, largest=False), reps=3) if Q * N <= 2e9 else float("nan")
        print(f"| {N} | {Q} | {K} | {whole:.3f} | {t_plan:.3f} | {t_kernel:.3f} | {t_thread:.3f} | {t_warp:.3f} "
              f"| {t_bounded:.3f} | {scan:.3f} | {t_select:.3f} | {cd:.3f} |", flush=True)
    # A cloud against itself: knn_points(p, p) takes the self plan (one sort; float64 K = 17..31
    # through the float32 filter, ops/_tiles.py); a copy of p takes the general plan.
    print("| N | K | dtype | knn_points(p, p) | knn_points(p, copy of p) |")
    print("|---:|---:|---|---:|---:|")
    for N, K, dtype in ((100_000, 16, torch.float32), (100_000, 30, torch.float32), (100_000, 30, torch.float64),
                        (100_000, 16, torch.float64), (1_000_000, 16, torch.float32)):
        p = torch.rand(1, N, 3, device="cuda", dtype=dtype)
        q = p.clone()
        with m.value_checks(False):
            assert torch.equal(m.knn_points(p, p, K=K).idx, m.knn_points(p, q, K=K).idx), (N, K, dtype)
            t_self = timed(lambda: m.knn_points(p, p, K=K))
            t_copy = timed(lambda: m.knn_points(p, q, K=K))
        print(f"| {N} | {K} | {str(dtype)[6:]} | {t_self:.3f} | {t_copy:.3f} |", flush=True)
    # FPFH's search, K = 100 bounded at a radius: thread lists against warp lists by how many
    # neighbours the radius holds (the lists fill only past K), on a surface-like cloud (a sphere)
    from mentor3ad_ext.ops._knn_self import _knn_self
    print("| N | K | mean neighbours < r | dtype | thread lists (1) | warp lists (2) | default (0) |")
    print("|---:|---:|---:|---|---:|---:|---:|")
    for dtype in (torch.float32, torch.float64):
        p = torch.nn.functional.normalize(torch.randn(1, 100_000, 3, device="cuda", dtype=dtype), dim=-1)
        lengths = torch.tensor([100_000], device="cuda")
        for want in (12, 25, 50, 100, 200):
            # squared radius holding ~want neighbours: a sphere of area 4 pi, 1e5 points
            r2 = want * 4.0 / 100_000
            with m.value_checks(False):
                mean = float((_knn_self(p, lengths, 100, r2, 1)[1] >= 0).sum(-1).float().mean())
                t = [timed(lambda: _knn_self(p, lengths, 100, r2, mode), reps=5) for mode in (1, 2, 0)]
            print(f"| 100000 | 100 | {mean:.0f} | {str(dtype)[6:]} | {t[0]:.3f} | {t[1]:.3f} | {t[2]:.3f} |", flush=True)
    if only_self:
        return 0
    p2 = torch.rand(1, 16_000, 3, device="cuda")
    l = torch.tensor([16_000], device="cuda")
    with m.value_checks(False), torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            m.knn_points(p2, p2, l, l, K=16)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=50))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12, max_name_column_width=50))
    return 0


if __name__ == "__main__":
    sys.exit(main())
