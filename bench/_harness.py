"""pytest-benchmark glue for the op benchmarks in bench/ (see bench/README.md).

A benchmark module builds `Case`s (mentor3ad_ext.bench: one op, one size, one device, a list of
implementations: ours, the in-package reference, peers) and hands them to `params`; each
(case, implementation) pair becomes one pytest-benchmark test, whose body is `measure`:

1. skip cleanly (recorded, with the reason) when a peer does not import or CUDA is missing;
2. prepare the implementation (input conversion, outside any timing);
3. call it once and run its correctness check: a wrong result fails the test, nothing is timed;
4. measure peak extra memory on a separate call (mentor3ad_ext.bench._measure.peak_memory:
   GPU allocator peak, or the process RSS high-water mark on CPU);
5. time it with pytest-benchmark (`pedantic`; CUDA work is synchronised inside the timed call),
   rounds chosen so that each implementation takes about MENTOR3AD_BENCH_TARGET_S seconds;
6. attach sizes, device, implementation, peak memory, check and notes to `extra_info`, and keep
   a record for the session's results file (bench/conftest.py writes it at the end; ratios
   peer/ours are computed there, from this run only).
"""
from __future__ import annotations

import datetime
import functools
import json
import os
import re
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pytest
import torch

from mentor3ad_ext.bench import OURS, Case, Impl, synced
from mentor3ad_ext.bench._measure import (device_name, device_slug, machine_info, now_iso, peak_memory,
                                          rounds_for)

TARGET_S = float(os.environ.get("MENTOR3AD_BENCH_TARGET_S", "1.0"))
MAX_ROUNDS = int(os.environ.get("MENTOR3AD_BENCH_MAX_ROUNDS", "100"))
# Calls slower than this get no separate memory-measurement call: their first call is used.
SEPARATE_MEMORY_CALL_MAX_S = 3.0
HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", "cuda"]

# One dict per (case, implementation) measured or skipped in this session.
RECORDS: List[Dict[str, Any]] = []


def params(cases: Iterable[Case]) -> List[Any]:
    """pytest parameters, one per (case, implementation), for a test taking `case_impl`.

    Cases marked slow get the `slow` marker (skipped unless MENTOR3AD_BENCH_FULL=1 or
    --bench-full); CUDA cases skip without a GPU.
    """
    out = []
    for case in cases:
        marks = []
        if case.slow:
            marks.append(pytest.mark.slow)
        if torch.device(case.device).type == "cuda":
            marks.append(pytest.mark.cuda)
            marks.append(pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device"))
        for impl in case.impls:
            # -k friendly: pytest's -k accepts letters, digits, _ - . only (no '=', spaces, parens).
            pid = re.sub(r"[^\w.-]+", "_", f"{case.op}-{case.name}-{case.device}-{impl.name}".replace("=", "")).strip("_")
            out.append(pytest.param((case, impl.name), marks=marks, id=pid))
    return out


def _base_record(case: Case, impl: Impl) -> Dict[str, Any]:
    return OrderedDict(op=case.op, case=case.name, device=case.device, device_name=device_name(case.device),
                       sizes=dict(case.sizes), impl=impl.name, role=impl.role, package=impl.package,
                       version=impl.version())


@functools.lru_cache(maxsize=None)
def _start_ops() -> None:
    """A first call of our ops before the first timed case, on any device: the first call of a
    torch.library custom op in a process imports torch._dynamo (1.6 s on the 2-core EPYC, more
    on a loaded machine). A first call past SEPARATE_MEMORY_CALL_MAX_S gets no warm call and,
    past 2 s, one timed round: the first CPU case of a session on a busy machine used to."""
    from mentor3ad_ext import knn_points

    a = torch.rand(1, 64, 3)
    knn_points(a, a, K=2).dists.sum().item()


@functools.lru_cache(maxsize=None)
def _start_cuda() -> None:
    """The CUDA context, cuBLAS and a first call of our ops, before the first timed case: on an
    H200 the first case's first call took over 3 s (2026-11-26 and -27, whichever case ran first),
    so it got no warm call and one timed round. Most of it, on any device: the first call of a
    torch.library custom op in a process imports torch._dynamo (1.6 s on the 2-core EPYC)."""
    from mentor3ad_ext import knn_points

    a = torch.ones(64, 64, device="cuda")
    (a @ a).sum().item()
    knn_points(a[None, :, :3], a[None, :, :3], K=2).dists.sum().item()


def measure(benchmark, case_impl: Tuple[Case, str]) -> Dict[str, Any]:
    """Check, measure memory, time (see the module docstring). Returns the session record."""
    case, name = case_impl
    impl = case.impl(name)
    benchmark.group = f"{case.op} {case.name} ({case.device})"
    reason = impl.unavailable()
    if reason:
        RECORDS.append(OrderedDict(_base_record(case, impl), skipped=reason))
        pytest.skip(reason)
    _start_ops()
    if case.device == "cuda":
        _start_cuda()
    fn = synced(impl.prepare(), case.device)

    # First call: warm-up, the output to check, and (for slow calls only) the memory figure.
    out, mem, mem_method, first_s = peak_memory(fn, case.device)
    try:
        verdict = impl.check(out)
    except AssertionError as err:
        pytest.fail(f"{case.id} {impl.name}: wrong result, not timed: {err}", pytrace=False)
    del out
    if first_s < SEPARATE_MEMORY_CALL_MAX_S:
        # A warm call: lazy initialisation (imports, dispatcher caches) does not count.
        _, mem, mem_method, warm_s = peak_memory(fn, case.device)
        first_s = min(first_s, warm_s)
    else:
        mem_method += " (first call)"
    rounds = rounds_for(first_s, TARGET_S, MAX_ROUNDS)
    warmup = 1 if first_s < 0.1 else 0

    record = _base_record(case, impl)
    record.update(peak_mem_bytes=mem, mem_method=mem_method, check=verdict, note=impl.note, scale=impl.scale)
    benchmark.extra_info.update(record)
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=warmup, iterations=1)

    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None:  # None under --benchmark-disable
        record.update(median_s=stats.median * impl.scale, min_s=stats.min * impl.scale,
                      measured_median_s=stats.median, rounds=stats.rounds, iqr_s=stats.iqr * impl.scale)
        benchmark.extra_info["median_s"] = record["median_s"]
    RECORDS.append(record)
    return record


def _versions(records: List[Dict[str, Any]]) -> Dict[str, Optional[str]]:
    import importlib.metadata as md

    import numpy

    import mentor3ad_ext

    v: Dict[str, Optional[str]] = {"mentor3ad_ext": mentor3ad_ext.__version__, "torch": torch.__version__,
                                   "numpy": numpy.__version__, "python": sys.version.split()[0]}
    for dist in ("scipy", "pytest-benchmark"):
        try:
            v[dist] = md.version(dist)
        except md.PackageNotFoundError:
            v[dist] = None
    for r in records:
        if r.get("package") and r.get("version") and "skipped" not in r:
            v[r["package"]] = r["version"]
    return v


def summarize_cases(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Group records by case; add ratio = implementation median / ours (same run)."""
    cases: "OrderedDict[Tuple[str, str, str], Dict[str, Any]]" = OrderedDict()
    for r in records:
        key = (r["op"], r["case"], r["device"])
        c = cases.setdefault(key, OrderedDict(op=r["op"], case=r["case"], device=r["device"],
                                              sizes=r["sizes"], ours=None, peers=[], skipped=[]))
        if "skipped" in r:
            c["skipped"].append({"impl": r["impl"], "reason": r["skipped"]})
        elif r["role"] == OURS:
            c["ours"] = _entry(r)
        else:
            c["peers"].append(_entry(r))
    for c in cases.values():
        ours = c["ours"]
        for p in c["peers"]:
            ok = ours is not None and ours.get("median_s") and p.get("median_s") is not None
            p["ratio_vs_ours"] = p["median_s"] / ours["median_s"] if ok else None
            p["ratio_vs_ours_min"] = p["min_s"] / ours["min_s"] if ok else None
    return list(cases.values())


def _entry(r: Dict[str, Any]) -> Dict[str, Any]:
    keys = ("impl", "role", "package", "version", "median_s", "min_s", "iqr_s", "rounds", "measured_median_s", "scale",
            "peak_mem_bytes", "mem_method", "check", "note")
    return OrderedDict((k, r.get(k)) for k in keys)


def write_results(folder: Path, records: List[Dict[str, Any]], *, full: bool, started: str,
                  env: Optional[Dict[str, Any]] = None) -> List[Path]:
    """One JSON per device type that ran in this session: <folder>/<device>-<date>.json."""
    written = []
    timed = [r for r in records if "median_s" in r or "skipped" in r]
    if not any("median_s" in r for r in timed):
        return written
    import mentor3ad_ext

    folder.mkdir(parents=True, exist_ok=True)
    for kind in sorted({torch.device(r["device"]).type for r in timed}):
        recs = [r for r in timed if torch.device(r["device"]).type == kind]
        if not any("median_s" in r for r in recs):
            continue
        device = recs[0]["device"]
        slug = device_slug(device)
        date = datetime.date.today().isoformat()
        path = folder / f"{slug}-{date}.json"
        if path.exists():  # never overwrite an earlier run of the same day
            path = folder / f"{slug}-{date}-{datetime.datetime.now().strftime('%H%M%S')}.json"
        doc = OrderedDict(
            schema=1,
            device=slug,
            device_name=device_name(device),
            started=started,
            finished=now_iso(),
            mode="full" if full else "default (slow cases skipped)",
            command=" ".join(sys.argv),
            machine=machine_info(),
            versions=_versions(recs),
            build_info=mentor3ad_ext.build_info(),
            settings={"target_s": TARGET_S, "max_rounds": MAX_ROUNDS,
                      "timer": "time.perf_counter (pytest-benchmark pedantic), CUDA synchronised inside",
                      "ratio": "implementation median / ours median, same run; > 1: ours is faster",
                      "env": env or {}},
            cases=summarize_cases(recs),
        )
        path.write_text(json.dumps(doc, indent=1) + "\n")
        written.append(path)
    return written
