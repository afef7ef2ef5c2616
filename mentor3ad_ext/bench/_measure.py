"""Measuring: time per call, peak extra memory per call, and what machine it ran on.

Peak memory, as reported in every benchmark table:
- CUDA: torch's caching allocator, `max_memory_allocated() - memory_allocated()` around one
  call after `reset_peak_memory_stats()`. Counts tensors made through torch only (our
  workspaces and outputs; a peer that calls cudaMalloc itself would be missed).
- CPU: the kernel's high-water mark of the process RSS (VmHWM) around one call, minus the RSS
  just before it. Before the call the garbage collector runs, glibc returns freed heap pages to
  the OS (malloc_trim) and the high-water mark is reset (`/proc/self/clear_refs` <- 5, Linux
  >= 4.0), so every page the call touches counts, whichever library allocates it (numpy, C++
  `new`, torch). It includes the outputs and anything else the process touches meanwhile; page
  granularity (4 KiB). Where clear_refs is not writable a thread samples /proc/self/statm every
  0.2 ms instead (can miss spikes shorter than that); the method used is recorded.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import gc
import os
import platform
import re
import statistics
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return None


def _release_free_heap() -> None:
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        pass


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory(fn: Callable[[], Any], device: str) -> Tuple[Any, Optional[int], str, float]:
    """Call fn once; return (output, peak extra bytes or None, method, seconds fn took)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize(dev)
        took = time.perf_counter() - t0
        return out, int(torch.cuda.max_memory_allocated(dev) - base), "cuda-allocator-peak", took
    _release_free_heap()
    before = _rss_bytes()
    if before is None:
        t0 = time.perf_counter()
        out = fn()
        return out, None, "unavailable", time.perf_counter() - t0
    if _reset_hwm():
        t0 = time.perf_counter()
        out = fn()
        took = time.perf_counter() - t0
        hwm = _status_kib("VmHWM")
        if hwm is not None:
            return out, max(0, hwm * 1024 - before), "rss-hwm", took
    # Fallback: poll RSS from a thread while fn runs.
    peak = [before]
    done = threading.Event()

    def poll():
        while not done.is_set():
            r = _rss_bytes()
            if r is not None and r > peak[0]:
                peak[0] = r
            time.sleep(0.0002)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        took = time.perf_counter() - t0
        done.set()
        t.join()
    r = _rss_bytes()
    peak[0] = max(peak[0], r or 0)
    return out, max(0, peak[0] - before), "rss-sampled", took


def time_rounds(fn: Callable[[], Any], rounds: int) -> list:
    """Wall-clock seconds of `rounds` calls (fn must synchronise itself, see `synced`)."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def rounds_for(first_call_s: float, target_s: float, max_rounds: int = 50, min_rounds: int = 3,
               min_rounds_below_s: float = 2.0) -> int:
    """How many timed rounds fit in about `target_s`, from the first call's time.

    Calls under `min_rounds_below_s` get at least `min_rounds` rounds, so that a median is a
    median even when one call takes most of the target; slower calls get one round.
    """
    if first_call_s <= 0:
        return max_rounds
    n = int(round(target_s / first_call_s))
    if first_call_s < min_rounds_below_s:
        n = max(n, min_rounds)
    return int(max(1, min(max_rounds, n)))


def median(xs) -> float:
    return float(statistics.median(xs))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _slug(s: str) -> str:
    s = re.sub(r"\((r|tm)\)", "", s.lower())
    s = re.sub(r"\b(processor|cpu|\d+-core)\b", "", s)
    return re.sub(r"[^a-z0-9]+", "-", s).strip("-")


def device_name(device: str) -> str:
    """Human-readable name of the machine a device string refers to."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{cpu_model()} ({usable_cores()} cores)"


def device_slug(device: str) -> str:
    """File-name label: 'cpu-<model>-<cores>c' or the GPU name, e.g. 'nvidia-h100-80gb-hbm3'."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return _slug(torch.cuda.get_device_name(dev))
    return f"cpu-{_slug(cpu_model())}-{usable_cores()}c"


def machine_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
    }
    try:
        info["load_avg"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def now_iso() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
