"""The profile scripts' timers and device choice (scripts/profile_*.py import them from this folder)."""
import os
import statistics
import time

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


def host_median_ms(fn, reps: int = 5) -> float:
    """Median wall-clock milliseconds of fn() after one warm-up call (the emulator's dry runs)."""
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def median_ms(fn, reps: int = 20, host_reps: int = 3) -> float:
    """cuda_median_ms on a CUDA machine, host_median_ms elsewhere."""
    return cuda_median_ms(fn, reps) if torch.cuda.is_available() else host_median_ms(fn, host_reps)


def profile_device(script: str):
    """The device a profile script runs on: CUDA, or the CPU under MENTOR3AD_CUDA_EMULATOR=1 (its
    dry run); None, after saying so, where neither is there."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get("MENTOR3AD_CUDA_EMULATOR"):
        return torch.device("cpu")
    print(f"{script}: no CUDA device (MENTOR3AD_CUDA_EMULATOR=1 ... --small runs it emulated)")
    return None
