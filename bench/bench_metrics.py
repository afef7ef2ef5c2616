"""Benchmarks of the exact metrics (pytest-benchmark).

    pytest bench/bench_metrics.py -p no:cacheprovider                    # both cases
    M3AD_BENCH_CASES=200x224x224 pytest bench/bench_metrics.py           # the small case only

Cases: 200 maps of 224x224 (a class test set at model resolution) and 100 maps of 800x800 (full
MVTec 3D-AD resolution), synthetic maps from metrics_data.py. Peers measured in the same run:
the official NumPy algorithm (mentor3ad_ext.reference.metrics), scikit-learn's roc_auc_score for
the pixel AUROC, and anomalib's AUPRO / torchmetrics' binary_auroc where installed (their values
are compared with the exact one). Every benchmark checks its value before timing; CUDA timings
synchronise. A summary (seconds, speed-ups, value differences, peak memory, device, cores,
versions) goes to bench/results/metrics-<device>-<date>.json and is printed at the end.
"""
from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mentor3ad_ext as m
from mentor3ad_ext.reference import metrics as R

from metrics_data import make_test_set

ALL_CASES = {"200x224x224": (200, 224, 224), "100x800x800": (100, 800, 800)}
CASES = [c for c in os.environ.get("M3AD_BENCH_CASES", ",".join(ALL_CASES)).split(",") if c]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
RESULTS: dict = {}


@functools.lru_cache(maxsize=None)
def data(case: str):
    n, h, w = ALL_CASES[case]
    return make_test_set(n, h, w, seed=0)


@functools.lru_cache(maxsize=None)
def tensors(case: str, device: str):
    maps, masks = data(case)
    return torch.from_numpy(maps).to(device), torch.from_numpy(masks).to(device)


@functools.lru_cache(maxsize=None)
def exact(case: str) -> dict:
    """Our values (checked against the official reference on a subset in `test_check_subset`)."""
    maps, masks = tensors(case, "cpu")
    return m.evaluate(maps, masks)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class _MallInfo2(__import__("ctypes").Structure):
    _fields_ = [(f, __import__("ctypes").c_size_t) for f in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _heap_in_use() -> int:
    """Bytes in use in the C heap (glibc mallinfo2: small blocks + mmapped blocks); the C++ kernels
    and torch's CPU allocator both allocate there."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    mi = libc.mallinfo2()
    return mi.uordblks + mi.hblkhd


def _peak_mem_mb(fn, device: str) -> float:
    """Peak extra memory of one call: torch's allocator on CUDA, the sampled C heap on CPU."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    try:
        base = _heap_in_use()
    except (AttributeError, OSError):
        return float("nan")
    peak, stop = [base], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _heap_in_use())
            time.sleep(0.0002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        fn()
    finally:
        stop.set()
        th.join()
    return max(0, peak[0] - base) / 2**20


def _run(benchmark, name: str, case: str, device: str, fn, *, rounds: int, value=None, exact_value=None):
    def call():
        out = fn()
        _sync(device)
        return out

    got = benchmark.pedantic(call, rounds=rounds, warmup_rounds=1 if rounds > 1 else 0, iterations=1)
    if value is not None:
        got = value(got)
    entry = {"case": case, "device": device, "seconds_min": benchmark.stats.stats.min,
             "seconds_mean": benchmark.stats.stats.mean, "rounds": rounds}
    if exact_value is not None and got is not None:
        entry["value"] = float(got)
        entry["abs_diff_from_exact"] = abs(float(got) - exact_value)
    entry["peak_mem_mb"] = _peak_mem_mb(call, device) if rounds > 1 else None
    RESULTS[f"{name} [{case}]"] = entry
    benchmark.extra_info.update({k: v for k, v in entry.items() if v is not None})
    return got


# ---- correctness first -----------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_check_subset(case):
    """Ours equals the official reference (exact protocol) on the first 20 maps of the case."""
    maps, masks = data(case)
    sub_m, sub_k = maps[:20], masks[:20]
    got = m.evaluate(sub_m, sub_k)
    ref = R.evaluate(sub_m, sub_k)
    for k in got:
        assert abs(got[k] - ref[k]) < 1e-9, (k, got[k], ref[k])


# ---- AUPRO ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("device", DEVICES)
def test_aupro_ours(benchmark, case, device):
    maps, masks = tensors(case, device)
    want = exact(case)["aupro@0.3"]
    assert m.aupro(maps, masks, 0.3) == want  # CPU and CUDA: the same bits
    _run(benchmark, f"aupro ours-{device}", case, device, lambda: m.aupro(maps, masks, 0.3), rounds=7,
         exact_value=want)


@pytest.mark.parametrize("case", CASES)
def test_aupro_reference(benchmark, case):
    maps, masks = data(case)
    want = exact(case)["aupro@0.3"]
    got = _run(benchmark, "aupro reference-numpy", case, "cpu", lambda: R.aupro(maps, masks, 0.3), rounds=1,
               exact_value=want)
    assert abs(got - want) < 1e-9


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("device", DEVICES)
def test_aupro_anomalib(benchmark, case, device):
    aupro_mod = pytest.importorskip("anomalib.metrics.aupro")
    maps, masks = tensors(case, device)

    def run():
        metric = aupro_mod._AUPRO(fpr_limit=0.3).to(device)
        metric.update(maps, masks.to(torch.int64))
        return metric.compute()

    got = run()
    want = exact(case)["aupro@0.3"]
    assert abs(float(got) - want) < 1e-2  # float32 accumulation: close, not exact
    _run(benchmark, f"aupro anomalib-{device}", case, device, run, rounds=3, value=float, exact_value=want)


# ---- pixel AUROC ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("device", DEVICES)
def test_pixel_auroc_ours(benchmark, case, device):
    maps, masks = tensors(case, device)
    want = exact(case)["p_auroc"]
    _run(benchmark, f"pixel_auroc ours-{device}", case, device, lambda: m.pixel_auroc(maps, masks), rounds=7,
         exact_value=want)


@pytest.mark.parametrize("case", CASES)
def test_pixel_auroc_sklearn(benchmark, case):
    from sklearn.metrics import roc_auc_score

    maps, masks = data(case)
    want = exact(case)["p_auroc"]
    got = _run(benchmark, "pixel_auroc scikit-learn", case, "cpu",
               lambda: roc_auc_score(masks.ravel(), maps.ravel()), rounds=1, exact_value=want)
    assert abs(got - want) < 1e-12


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("device", DEVICES)
def test_pixel_auroc_torchmetrics(benchmark, case, device):
    F = pytest.importorskip("torchmetrics.functional.classification")
    maps, masks = tensors(case, device)
    want = exact(case)["p_auroc"]
    run = lambda: F.binary_auroc(maps.reshape(-1), masks.reshape(-1).to(torch.int64))  # noqa: E731
    assert abs(float(run()) - want) < 1e-3
    _run(benchmark, f"pixel_auroc torchmetrics-{device}", case, device, run, rounds=3, value=float, exact_value=want)


# ---- everything at once -----------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("device", DEVICES)
def test_evaluate_ours(benchmark, case, device):
    maps, masks = tensors(case, device)
    assert m.evaluate(maps, masks) == exact(case)
    _run(benchmark, f"evaluate ours-{device}", case, device, lambda: m.evaluate(maps, masks), rounds=7)


# ---- summary ----------------------------------------------------------------------------------

def _versions() -> dict:
    out = {"mentor3ad_ext": m.__version__, "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("scipy", "sklearn", "anomalib", "torchmetrics"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


@pytest.fixture(scope="module", autouse=True)
def _summary():
    yield
    if not RESULTS:
        return
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else (platform.processor() or "cpu")
    info = {"date": datetime.date.today().isoformat(), "device": device, "cores": os.cpu_count(),
            "threads": m.get_num_threads(), "torch_threads": torch.get_num_threads(),
            "loadavg_at_end": os.getloadavg(), "versions": _versions(), "build": m.build_info(), "results": RESULTS}
    ref = {case: RESULTS.get(f"aupro reference-numpy [{case}]", {}).get("seconds_min") for case in CASES}
    for key, e in RESULTS.items():
        if ref.get(e["case"]) and key.startswith("aupro"):
            e["speedup_vs_reference"] = ref[e["case"]] / e["seconds_min"]
    for case in CASES:
        cpu = RESULTS.get(f"aupro ours-cpu [{case}]")
        gpu = RESULTS.get(f"aupro ours-cuda [{case}]")
        if cpu and gpu:
            gpu["speedup_vs_ours_cpu"] = cpu["seconds_min"] / gpu["seconds_min"]
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    tag = "cuda" if torch.cuda.is_available() else "cpu"
    path = out_dir / f"metrics-{tag}-{info['date']}.json"
    path.write_text(json.dumps(info, indent=2, default=str))
    print(f"\nmetrics benchmark summary -> {path}")
    for key, e in sorted(RESULTS.items()):
        extra = ""
        if "speedup_vs_reference" in e:
            extra += f"  {e['speedup_vs_reference']:8.1f}x vs reference"
        if "abs_diff_from_exact" in e:
            extra += f"  |diff| {e['abs_diff_from_exact']:.2e}"
        if e.get("peak_mem_mb") is not None:
            extra += f"  peak {e['peak_mem_mb']:.0f} MiB"
        print(f"  {key:48s} {e['seconds_min'] * 1e3:10.1f} ms{extra}")
