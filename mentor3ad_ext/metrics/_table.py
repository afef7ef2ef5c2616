"""The compiled interval table (csrc/metrics/metrics.h) and the exact arithmetic on its results.

`_C.metrics_build` returns exact integers (Python ints up to 256 bits): pixel counts C, defect
counts P and fixed-point overlap sums S (one region == 2^96). Areas are finished here with
`fractions.Fraction`, so every metric is the correctly rounded float of the exact area of the
official curve (the only approximation is the 2^-96 fixed point of 1/region_size).
"""
from __future__ import annotations

import os
from bisect import bisect
from fractions import Fraction
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .._ext import lib
from ..ops._launch import DTYPE_TAGS, device_args
from ._inputs import unravel

WEIGHT_BITS = 96  # must match csrc/metrics/exact_math.h

# M3AD_METRICS_PROFILE=1: every build records its phase times (BuildParams::profile); the last
# one is kept here as [(phase, milliseconds, "gpu" | "host")] (see scripts/profile_metrics.py).
LAST_PROFILE: Optional[list] = None


def _profile_env() -> bool:
    return os.environ.get("M3AD_METRICS_PROFILE", "") not in ("", "0")


class Built:
    """A built table with its statistics (dict), the shape it was built from and, when profiled,
    its phase times."""

    def __init__(self, table, stats: dict, shape, profile: Optional[list] = None):
        self.table = table
        self.stats = stats
        self.shape = shape
        self.profile = profile

    @property
    def n_neg(self) -> int:
        return self.stats["n_neg"]

    @property
    def n_pos(self) -> int:
        return self.stats["n_pos"]

    @property
    def n_regions(self) -> int:
        n = self.stats["n_regions"]
        if n < 0:
            raise RuntimeError("metrics: this table was built without regions (need_regions=False)")
        return n


def build(op: str, maps: torch.Tensor, masks: torch.Tensor, *, mask_name: str = "gt_masks",
          map_name: str = "anomaly_maps", need_regions: bool = True, profile: Optional[bool] = None,
          search: int = 0, host_buffer: bool = True, join_runs: bool = True) -> Built:
    """Validate values and build the table (maps (N,H,W) float32/64, masks (N,H,W) uint8, contiguous).

    need_regions=False (the AUROCs) skips the connected components: `n_regions` is then unknown.
    profile (default: the M3AD_METRICS_PROFILE environment variable) records phase times;
    search, host_buffer (the CUDA build copies into a torch buffer, pinned on a GPU; False: a
    std::vector) and join_runs (False: one group per distinct defect score) are for
    measurements and tests only.
    """
    global LAST_PROFILE
    N, H, W = maps.shape
    dev, stream = device_args(maps)
    if profile is None:
        profile = _profile_env()
    keep: List[torch.Tensor] = []

    def alloc(nbytes: int) -> int:
        buf = torch.empty(max(int(nbytes), 1), dtype=torch.uint8, device=maps.device)
        keep.append(buf)
        return buf.data_ptr()

    def alloc_host(nbytes: int) -> int:
        # Pinned memory (torch's caching host allocator) copies at full bus speed; under the CUDA
        # emulator the "device" is the CPU and plain memory does.
        buf = torch.empty(max(int(nbytes), 1), dtype=torch.uint8, pin_memory=maps.is_cuda)
        keep.append(buf)
        return buf.data_ptr()

    table = lib().metrics_build(maps.data_ptr(), masks.data_ptr(), N, H, W, DTYPE_TAGS[maps.dtype], dev, stream, alloc,
                                alloc_host if host_buffer else None, bool(need_regions), bool(profile), int(search),
                                bool(join_runs))
    keep.clear()  # the build has finished with its scratch memory (the table lives on the host)
    prof = table.profile() if profile else None
    if profile:
        LAST_PROFILE = prof
    stats = dict(table.stats())
    if stats["n_nonbinary"]:
        idx = unravel(stats["first_nonbinary"], maps.shape)
        value = int(masks.reshape(-1)[stats["first_nonbinary"]])
        raise ValueError(f"{op}: {mask_name} must be binary (0/1), found {value} at index {idx} "
                         f"({stats['n_nonbinary']} such values)")
    if stats["n_nonfinite"]:
        idx = unravel(stats["first_nonfinite"], maps.shape)
        value = float(maps.reshape(-1)[stats["first_nonfinite"]])
        raise ValueError(f"{op}: {map_name} contains NaN or Inf ({stats['n_nonfinite']} values, first {value} "
                         f"at index {idx}); scores must be finite")
    return Built(table, stats, tuple(maps.shape), prof)


def require_pro_defined(op: str, b: Built, mask_name: str = "gt_masks") -> None:
    if b.n_neg == 0:
        raise ValueError(f"{op}: the metric is undefined: {mask_name} has no normal (0) pixel, so the "
                         "false-positive rate is undefined")
    if b.n_regions == 0:
        raise ValueError(f"{op}: the metric is undefined: {mask_name} has no defect (1) pixel, so there "
                         "is no ground-truth region")


def require_two_classes(op: str, b: Built, label_name: str) -> None:
    if b.n_neg == 0 or b.n_pos == 0:
        only = "1 (defect)" if b.n_neg == 0 else "0 (normal)"
        raise ValueError(f"{op}: ROC AUC is undefined: only one class is present in {label_name} "
                         f"(every label is {only})")


def c_limit(fpr_limit: float, n_neg: int) -> int:
    """floor(fpr_limit * n_neg), exactly: the most normal pixels a threshold may admit."""
    lim = Fraction(fpr_limit)
    return (lim.numerator * n_neg) // lim.denominator


def check_fpr_limit(op: str, name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{op}: {name} must be a float in (0, 1], got {type(v).__name__}")
    v = float(v)
    if not (0.0 < v <= 1.0):
        raise ValueError(f"{op}: {name} must lie in (0, 1], got {v}")
    return v


def pro_areas(b: Built, limits: Sequence[float], result: dict) -> List[float]:
    """AUPRO (exact protocol) per limit from a query made with c_limit(limit) for each limit."""
    n, den_s = b.n_neg, b.n_regions << WEIGHT_BITS
    out = []
    for lim, area_int, cross in zip(limits, result["area"], result["cross"]):
        L = Fraction(lim)
        area = Fraction(area_int, 2 * n * den_s)
        if cross is not None:
            c0, s0, c1, s1 = cross
            x0, x1 = Fraction(c0, n), Fraction(c1, n)
            y0, y1 = Fraction(s0, den_s), Fraction(s1, den_s)
            y_at = y0 + (y1 - y0) * (L - x0) / (x1 - x0)
            area += (y0 + y_at) * (L - x0) / 2
        out.append(float(area / L))
    return out


def roc_value(b: Built, result: dict) -> float:
    return float(Fraction(result["roc2"], 2 * b.n_neg * b.n_pos))


def official_trapezoid(x, y, x_max: Optional[float]) -> float:
    """generic_util.trapezoid of the MVTec evaluation code, on Python floats (used for the
    mvtec3d protocol, whose curve has at most num_thresholds + 1 points)."""
    x = [float(v) for v in x]
    y = [float(v) for v in y]
    correction = 0.0
    if x_max is not None:
        if x_max not in x:
            ins = bisect(x, x_max)
            y_interp = y[ins - 1] + ((y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1]))
            correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
        keep = [i for i, v in enumerate(x) if v <= x_max]
        x = [x[i] for i in keep]
        y = [y[i] for i in keep]
    xa, ya = np.asarray(x), np.asarray(y)
    return float(np.sum(0.5 * (ya[1:] + ya[:-1]) * (xa[1:] - xa[:-1])) + correction)


def mvtec3d_curve(b: Built, num_thresholds: int) -> Tuple[List[float], List[float], List[int]]:
    """(fprs, pros) of the MVTec 3D-AD script, ascending, ending at (1, 1); and the ranks queried."""
    n = b.n_neg
    positions = np.linspace(0, n - 1, num=num_thresholds, dtype=int)
    ranks = [int(n - p) for p in positions]  # normal pixels scoring >= the threshold
    res = b.table.query([], ranks)
    den_s = b.n_regions << WEIGHT_BITS
    fprs, pros = [1.0], [1.0]
    for p, s in zip(positions, res["rank_s"]):
        fprs.append(1.0 - (int(p) + 1) / n)
        pros.append(float(Fraction(s, den_s)))
    return fprs[::-1], pros[::-1], ranks
