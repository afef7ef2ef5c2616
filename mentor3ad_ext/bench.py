"""`python -m mentor3ad_ext.bench`: a quick table of our ops against the in-package references
and peers installed on this machine. The full, recorded benchmarks live in bench/ (pytest-benchmark).
"""
from __future__ import annotations

import argparse
import time
from typing import Callable, List, Optional, Tuple

import torch


def _time(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    fn()  # warm-up (and lazy init)
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _cases(device: torch.device, quick: bool) -> List[Tuple[str, Callable, List[Tuple[str, Callable]]]]:
    import mentor3ad_ext as m
    from mentor3ad_ext import reference as R

    g = torch.Generator().manual_seed(0)
    cases = []
    n, k = (16_000, 256) if quick else (100_000, 1024)
    pts = torch.rand(1, n, 3, generator=g).to(device)
    peers = [("reference (torch loop)", lambda: R.sample_farthest_points(pts, K=k))]
    try:
        import fpsample  # type: ignore

        arr = pts[0].cpu().numpy()
        peers.append(("fpsample bucket_fps_kdline", lambda: fpsample.bucket_fps_kdline_sampling(arr, k, h=7)))
    except ImportError:
        pass
    cases.append((f"FPS N={n} K={k}", lambda: m.sample_farthest_points(pts, K=k), peers))
    return cases


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="mentor3ad bench", description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"{'case':32s} {'ours (ms)':>10s}  {'peer':32s} {'peer (ms)':>10s} {'speed-up':>9s}")
    for name, ours, peers in _cases(device, args.quick):
        t_ours = _time(ours, device, args.repeat)
        for peer_name, peer in peers:
            t_peer = _time(peer, device, 1 if "reference" in peer_name else args.repeat)
            print(f"{name:32s} {t_ours * 1e3:10.2f}  {peer_name:32s} {t_peer * 1e3:10.2f} {t_peer / t_ours:8.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
