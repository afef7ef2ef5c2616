"""`python -m mentor3ad_ext.bench`: ours against the references and peers, as a table.

Every implementation is called once untimed and its output checked (a wrong result prints
WRONG; the exit status is 1 when ours or the in-package reference is wrong or fails), then
timed for about --target-s seconds; the table shows the median. "vs ours" is the implementation's median over ours, measured in this run: above 1 means
ours is faster. Peers that are not installed are listed as skipped. For recorded results with
peak memory use the pytest-benchmark suite in bench/ of the source tree.

Run as `python -m mentor3ad_ext.bench` it sets OMP_WAIT_POLICY=PASSIVE unless the variable is
already set (torch's spinning OpenMP workers otherwise slow the other threads on small machines).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

import torch

from ._core import CLI_CASES, OURS, REFERENCE, synced
from ._measure import device_name, median, rounds_for, time_rounds


def _fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def _run_case(case, target_s: float, out=None) -> bool:
    out = out or sys.stdout
    rows = []
    ok = True
    t_ours = None
    for impl in case.impls:
        reason = impl.unavailable()
        if reason:
            rows.append((impl.name, None, None, f"skipped: {reason}"))
            continue
        try:
            fn = synced(impl.prepare(), case.device)
            t0 = time.perf_counter()
            result = fn()
            first = time.perf_counter() - t0
            verdict = impl.check(result)
        except AssertionError as err:
            ok = ok and impl.role not in (OURS, REFERENCE)  # a peer's wrong answer is its bug
            rows.append((impl.name, None, None, f"WRONG: {err}"))
            continue
        except Exception as err:  # a peer whose API changed must not take the whole table down
            ok = ok and impl.role not in (OURS, REFERENCE)
            rows.append((impl.name, None, None, f"error: {type(err).__name__}: {err}"))
            continue
        del result
        # The checked call was the warm-up (lazy init, caches); at least one more call is timed.
        times = time_rounds(fn, rounds_for(first, target_s, max_rounds=20, min_rounds=1))
        t = median(times) * impl.scale
        if impl.role == OURS:
            t_ours = t
        note = f"{verdict}; {impl.note}" if impl.note else verdict
        rows.append((impl.name, t, None if t_ours is None else t / t_ours, note))
    w = max(len(r[0]) for r in rows)
    print(f"\n{case.op} {case.name} ({case.device})", file=out)
    print(f"  {'implementation':{w}s}  {'median':>9s}  {'vs ours':>8s}  check / note", file=out)
    for name, t, ratio, note in rows:
        r = "-" if ratio is None else f"{ratio:.3g}x"
        print(f"  {name:{w}s}  {_fmt_time(t):>9s}  {r:>8s}  {note}", file=out)
    return ok


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mentor3ad_ext.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes: well under 30 s on 2 cores")
    ap.add_argument("--op", action="append", choices=sorted(CLI_CASES), help="only these ops (repeatable)")
    ap.add_argument("--target-s", type=float, default=None,
                    help="time spent timing each implementation (default 0.3 with --quick, else 1)")
    args = ap.parse_args(argv)
    target = args.target_s if args.target_s is not None else (0.3 if args.quick else 1.0)

    import mentor3ad_ext as m

    info = m.build_info()
    threads = info.get("threads")
    print(f"mentor3ad_ext {m.__version__} on {device_name(args.device)}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, {threads} mentor3ad_ext threads; "
          f"extension {info.get('extension')}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
          f"{'; quick sizes' if args.quick else ''}")
    print("median wall time per call; 'vs ours' = its time / ours (above 1: ours is faster)")
    ok = True
    t0 = time.perf_counter()
    for op in args.op or sorted(CLI_CASES):
        for case in CLI_CASES[op](args.device, args.quick):
            ok &= _run_case(case, target)
    print(f"\n{time.perf_counter() - t0:.1f} s. Missing peers: pip install -e '.[bench]'. "
          "Recorded benchmarks with peak memory: pytest bench (see bench/README.md).")
    if not ok:
        print("Some implementation returned a WRONG result (see above).", file=sys.stderr)
    return 0 if ok else 1
