"""The profile scripts' GPU timer (scripts/profile_*.py import it from this folder)."""
import statistics

import torch


def cuda_median_ms(fn, reps: int = 20) -> float:
    """Median milliseconds of fn() between CUDA events, after one warm-up call (fn's own host
    waits included)."""
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)
