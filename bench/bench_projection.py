"""Point <-> pixel projection: fused ops vs the plain-torch composition (mentor3ad_ext.reference).

Run: ``pytest bench/bench_projection.py`` (add ``--benchmark-json=...`` for pytest-benchmark's
own report). A summary with device, core count, versions, times, speed-ups and peak memory is
written to ``bench/results/<device>-<date>-projection.json``.

Cases (B=8, N=50k points):

* ``points_to_grid``: features (B, N, C) splatted with reduce="mean" onto a 224x224 grid
  (points in pixel scan order as in an organized cloud, 25% of them without a pixel), forward
  and forward+backward. Peer: scatter_add on
  (B, H*W, C) + bincount counts + division + permute to (B, C, H, W).
* ``grid_to_points``: a (B, C, 28, 28) feature grid (the RGB patch grid) sampled bilinearly at
  N pixel coordinates -> (B, N, C), forward and forward+backward (grid and uv). Peer:
  F.grid_sample + transpose to (B, N, C).

C is 1152 (the Mentor3AD feature width) on CUDA. On CPU the default is C=128 (env
``M3AD_BENCH_C``): at C=1152 the peer needs ~8 GB on this 24 GB, 2-core shared machine and a
round takes tens of seconds; per-element work is the same, so the ratio carries over.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the inputs; on CPU the peak
resident set size above the starting RSS, sampled every 0.2 ms from /proc/self/statm by a
background thread during one call (large tensors are mmap-backed and returned to the OS when
freed, so the RSS follows the live tensors). Every case checks ours against the peer first.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import threading
import time
from pathlib import Path

import pytest
import torch

import mentor3ad_ext as m
from mentor3ad_ext import reference as R

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
B, N, HW_BIG, HW_SMALL = 8, 50_000, 224, 28
C = int(os.environ.get("M3AD_BENCH_C", "1152" if DEVICE.type == "cuda" else "128"))
ROUNDS = 5 if DEVICE.type == "cuda" else 3
RESULTS: dict[str, dict] = {}
_INPUTS: dict[str, tuple] = {}


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_extra_memory(fn) -> int:
    """Bytes allocated by one call of fn beyond what existed before it (its peak)."""
    if DEVICE.type == "cuda":
        _sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        _sync()
        return torch.cuda.max_memory_allocated() - base
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        fn()
    finally:
        stop.set()
        t.join()
    return max(peak[0], _rss_bytes()) - base


def _inputs(case: str):
    if case in _INPUTS:
        return _INPUTS[case]
    g = torch.Generator().manual_seed(0)
    if case == "points_to_grid":
        feats = torch.randn(B, N, C, generator=g)
        # Points of an organized cloud come in pixel (scan) order; 25% have no pixel.
        idx = torch.randint(0, HW_BIG * HW_BIG, (B, N), generator=g).sort(dim=1).values
        idx[torch.rand(B, N, generator=g) < 0.25] = -1
        x = (feats.to(DEVICE), idx.to(DEVICE))
    else:
        grid = torch.randn(B, C, HW_SMALL, HW_SMALL, generator=g)
        uv = torch.rand(B, N, 2, generator=g) * HW_SMALL
        x = (grid.to(DEVICE), uv.to(DEVICE))
    _INPUTS[case] = x
    return x


def _fn(case: str, impl: str, backward: bool):
    lib = m if impl == "ours" else R
    a, b = _inputs(case)
    if case == "points_to_grid":
        def forward(a_):
            return lib.points_to_grid(a_, b, HW_BIG, HW_BIG, "mean")
    else:
        def forward(a_, b_=b):
            return lib.grid_to_points(a_, b_)
    if not backward:
        def run():
            with torch.no_grad():
                return forward(a)
        return run

    def run_bwd():
        a_ = a.detach().requires_grad_()
        if case == "points_to_grid":
            out = forward(a_)
            grads = torch.autograd.grad(out.sum(), (a_,))
        else:
            b_ = b.detach().requires_grad_()
            out = forward(a_, b_)
            grads = torch.autograd.grad(out.sum(), (a_, b_))
        return out, grads
    return run_bwd


def _check(case: str, backward: bool):
    ours, peer = _fn(case, "ours", backward)(), _fn(case, "torch", backward)()
    if backward:
        for x, y in zip(ours[1], peer[1]):
            # The uv gradient sums C (1152 on CUDA) products per point in float32, in a different
            # order than the peer: near-cancelling sums differ by ~1e-4 absolute, so the absolute
            # tolerance scales with the gradient's magnitude.
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5 * float(y.abs().max()))
        ours, peer = ours[0], peer[0]
    torch.testing.assert_close(ours, peer, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("impl", ["ours", "torch"])
@pytest.mark.parametrize("case", ["points_to_grid", "grid_to_points"])
def test_projection(benchmark, case, impl, backward):
    key = f"{case}/{'fwd+bwd' if backward else 'fwd'}"
    if impl == "ours":
        _check(case, backward)
    fn = _fn(case, impl, backward)
    fn()  # warm-up (allocator, lazy init)
    mem = peak_extra_memory(fn)

    def timed():
        fn()
        _sync()

    benchmark.group = key
    benchmark.extra_info.update(peak_extra_bytes=mem, B=B, N=N, C=C, device=str(DEVICE))
    benchmark.pedantic(timed, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    RESULTS.setdefault(key, {})[impl] = {"seconds": benchmark.stats.stats.median, "peak_extra_bytes": mem}


def _device_name() -> str:
    if DEVICE.type == "cuda":
        return torch.cuda.get_device_name().lower().replace(" ", "-")
    name = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "-".join(name.lower().split()[:2])


@pytest.fixture(scope="module", autouse=True)
def _write_results():
    yield
    if not RESULTS:
        return
    for entry in RESULTS.values():
        if "ours" in entry and "torch" in entry:
            entry["speedup"] = entry["torch"]["seconds"] / entry["ours"]["seconds"]
            entry["memory_ratio"] = entry["ours"]["peak_extra_bytes"] / max(entry["torch"]["peak_extra_bytes"], 1)
    out = {
        "device": _device_name() if DEVICE.type == "cpu" else torch.cuda.get_device_name(),
        "device_type": DEVICE.type,
        "cores": os.cpu_count(),
        "threads": m.get_num_threads(),
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "mentor3ad_ext": m.__version__, "python": platform.python_version()},
        "build": m.build_info(),
        "shape": {"B": B, "N": N, "C": C, "points_to_grid_grid": HW_BIG, "grid_to_points_grid": HW_SMALL},
        "date": datetime.date.today().isoformat(),
        "results": RESULTS,
    }
    path = Path(__file__).parent / "results" / f"{_device_name()}-{out['date']}-projection.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
