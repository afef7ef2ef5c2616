"""Where the CUDA metrics' time goes: the phases of the table build (CUDA events around every
kernel, host clocks around every wait and host step), the whole calls, the plain binary search
that count_normals replaced, torchmetrics' binary_auroc and our CPU path, on the two benchmark
sets of bench/metrics_data.py (200 maps of 224x224, 100 maps of 800x800); then a torch.profiler
table of one aupro call.

    python scripts/profile_metrics.py                 # on a machine with a CUDA GPU
    M3AD_PROFILE_CASES=200x224x224 python scripts/profile_metrics.py
    MENTOR3AD_CUDA_EMULATOR=1 M3AD_PROFILE_CASES=4x64x64 python scripts/profile_metrics.py --emulated
                                                      # a dry run of this script without a GPU
"""
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # this checkout's package, whatever is installed

import mentor3ad_ext as m  # noqa: E402
from mentor3ad_ext.metrics import _table as T  # noqa: E402
from metrics_data import make_test_set  # noqa: E402

from _cuda_timing import cuda_median_ms, host_median_ms  # noqa: E402  (this folder)

CASES = {"200x224x224": (200, 224, 224), "100x800x800": (100, 800, 800)}
EMULATED = "--emulated" in sys.argv[1:]  # CUDA kernels under the host emulator, on CPU tensors
DEV = "cpu" if EMULATED else "cuda"


def timed(fn, reps=15):
    """Median milliseconds of fn() between CUDA events (fn's own host waits included)."""
    if EMULATED:
        return host_median_ms(fn, reps=2)
    return cuda_median_ms(fn, reps)


def phases(maps, masks, reps=15, **kw):
    """Median time per phase over `reps` profiled builds: {name: (ms, where)} in build order, and stats."""
    runs = []
    b = None
    for _ in range(reps + 1):
        b = T.build("profile", maps, masks, profile=True, **kw)
        runs.append(b.profile)
    runs = runs[1:]  # the first build warms up the allocators
    out = {}
    for name, _, where in runs[0]:
        out[name] = (statistics.median(r[name] for r in ({p[0]: p[1] for p in run} for run in runs)), where)
    return out, b.stats


def cpu_path(fn):
    """fn() on our CPU kernels (under the emulator, CPU tensors go to the CUDA kernels otherwise)."""
    if not EMULATED:
        return fn()
    from mentor3ad_ext.ops import _launch
    _launch.EMULATED_CUDA = False
    try:
        return fn()
    finally:
        _launch.EMULATED_CUDA = True


def main():
    if EMULATED and os.environ.get("MENTOR3AD_CUDA_EMULATOR") != "1":
        print("--emulated needs MENTOR3AD_CUDA_EMULATOR=1")
        return 2
    if not EMULATED and not torch.cuda.is_available():
        print("profile_metrics.py needs a CUDA GPU")
        return 2
    try:
        from torchmetrics.functional.classification import binary_auroc
    except ImportError:
        binary_auroc = None
    cases = [c for c in os.environ.get("M3AD_PROFILE_CASES", ",".join(CASES)).split(",") if c]
    device = "the CUDA emulator (timings meaningless)" if EMULATED else torch.cuda.get_device_name(0)
    print(f"device: {device}; CPU threads of our CPU path: {m.get_num_threads()}; torch {torch.__version__}")
    for case in cases:
        n, h, w = CASES[case] if case in CASES else map(int, case.split("x"))
        t0 = time.perf_counter()
        maps_np, masks_np = make_test_set(n, h, w, seed=0)
        cpu_maps, cpu_masks = torch.from_numpy(maps_np), torch.from_numpy(masks_np)
        maps, masks = cpu_maps.to(DEV), cpu_masks.to(DEV)
        masks_u8 = masks.view(torch.uint8)
        print(f"\n## {case}  (data made in {time.perf_counter() - t0:.1f} s)\n")

        full, stats = phases(maps, masks_u8)
        roc, _ = phases(maps, masks_u8, need_regions=False)
        plain, _ = phases(maps, masks_u8, need_regions=False, search=1)
        cpu_full, _ = cpu_path(lambda: phases(cpu_maps, cpu_masks.view(torch.uint8), reps=3))
        print(f"pixels {stats['n_pixels']}, defect pixels {stats['n_pos']}, regions {stats['n_regions']}, "
              f"distinct defect scores m = {stats['n_groups']}, table groups after joining vertical runs "
              f"{stats['n_table']}\n")
        print("| phase | where | aupro build | AUROC-only build | AUROC-only, plain binary search |")
        print("|---|---|---:|---:|---:|")
        for name in full:
            cells = [f"{d[name][0]:.3f}" if name in d else "" for d in (full, roc, plain)]
            print(f"| {name} | {full[name][1]} | " + " | ".join(cells) + " |")
        for name in roc:
            if name not in full:
                cells = [f"{d[name][0]:.3f}" if name in d else "" for d in (full, roc, plain)]
                print(f"| {name} | {roc[name][1]} | " + " | ".join(cells) + " |")
        print("\nms, medians of 15 profiled builds (events add a little). gpu rows: device time between "
              "consecutive events; host rows: host wall time (a wait includes the device work still queued).\n")

        print("| CPU path phase | ms |")
        print("|---|---:|")
        for name, (ms, _) in cpu_full.items():
            print(f"| {name} | {ms:.2f} |")

        print("\n| whole call | ms |")
        print("|---|---:|")
        rows = [
            ("aupro (cuda)", timed(lambda: m.aupro(maps, masks, 0.3))),
            ("pixel_auroc (cuda)", timed(lambda: m.pixel_auroc(maps, masks))),
            ("evaluate (cuda)", timed(lambda: m.evaluate(maps, masks))),
            ("table build only, aupro (cuda)", timed(lambda: T.build("p", maps, masks_u8))),
            ("table build only, AUROC (cuda)", timed(lambda: T.build("p", maps, masks_u8, need_regions=False))),
        ]
        if binary_auroc is not None:
            tgt = masks.reshape(-1).to(torch.int64)
            rows.append(("torchmetrics binary_auroc (cuda)", timed(lambda: binary_auroc(maps.reshape(-1), tgt), reps=5)))
        else:
            rows.append(("torchmetrics binary_auroc (cuda)", float("nan")))
        rows.append(("aupro (cpu, ours)", cpu_path(lambda: host_median_ms(lambda: m.aupro(cpu_maps, cpu_masks, 0.3)))))
        rows.append(("pixel_auroc (cpu, ours)", cpu_path(lambda: host_median_ms(lambda: m.pixel_auroc(cpu_maps, cpu_masks)))))
        for name, ms in rows:
            print(f"| {name} | {ms:.3f} |")
        got, want = m.aupro(maps, masks, 0.3), cpu_path(lambda: m.aupro(cpu_maps, cpu_masks, 0.3))
        print(f"\naupro cuda == cpu: {got == want} ({got!r})")
        del maps, masks, masks_u8
        if not EMULATED:
            torch.cuda.empty_cache()

    n, h, w = CASES[cases[-1]] if cases[-1] in CASES else map(int, cases[-1].split("x"))
    maps_np, masks_np = make_test_set(min(n, 20), h, w, seed=0)
    maps, masks = torch.from_numpy(maps_np).to(DEV), torch.from_numpy(masks_np).to(DEV)
    m.aupro(maps, masks)
    activities = [torch.profiler.ProfilerActivity.CPU] + ([] if EMULATED else [torch.profiler.ProfilerActivity.CUDA])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(3):
            m.aupro(maps, masks)
        if not EMULATED:
            torch.cuda.synchronize()
    print(f"\ntorch.profiler, 3 x aupro on {min(n, 20)}x{h}x{w}:")
    print(prof.key_averages().table(sort_by="cpu_time_total" if EMULATED else "cuda_time_total", row_limit=25,
                                    max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
