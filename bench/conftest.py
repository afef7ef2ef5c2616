"""Options and session hooks for the benchmarks (see bench/README.md and bench/_harness.py).

- slow cases run only with MENTOR3AD_BENCH_FULL=1 or --bench-full (or an explicit -m slow);
- at the end of the session the results go to bench/results/<device>-<date>.json
  (--bench-results DIR to write elsewhere, --bench-results none to write nothing).
"""
from __future__ import annotations

import os
import sys

# torch's OpenMP workers busy-wait after every parallel op (libgomp's default ACTIVE policy). On a
# small shared machine they then take the cores that our thread pool and the peers run on: we
# measured mentor3ad_ext FPS at 16k points going from 5.8 ms to 44 ms right after a torch op, on
# 2 loaded cores. PASSIVE makes every implementation's numbers steadier; it must be set before
# torch loads libgomp. Export OMP_WAIT_POLICY=ACTIVE to measure with the default instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
OMP_POLICY_BEFORE_TORCH = "torch" not in sys.modules

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import _harness  # noqa: E402
from mentor3ad_ext.bench._measure import now_iso

_STARTED = now_iso()
_WRITTEN = []


def pytest_addoption(parser):
    group = parser.getgroup("mentor3ad_ext benchmarks")
    group.addoption("--bench-full", action="store_true", default=False,
                    help="also run the slow cases (same as MENTOR3AD_BENCH_FULL=1)")
    group.addoption("--bench-results", default=str(Path(__file__).parent / "results"),
                    help="folder for the session's results JSON, or 'none' (default: bench/results)")


def _full(config) -> bool:
    return bool(config.getoption("--bench-full")) or os.environ.get("MENTOR3AD_BENCH_FULL", "") not in ("", "0")


def pytest_collection_modifyitems(config, items):
    if _full(config) or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow case: run with MENTOR3AD_BENCH_FULL=1 or --bench-full")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    folder = session.config.getoption("--bench-results")
    if folder.lower() == "none" or not _harness.RECORDS:
        return
    env = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MENTOR3AD_NUM_THREADS")}
    env["OMP_WAIT_POLICY_applied"] = OMP_POLICY_BEFORE_TORCH
    _WRITTEN.extend(_harness.write_results(Path(folder), _harness.RECORDS, full=_full(session.config),
                                           started=_STARTED, env=env))


def pytest_terminal_summary(terminalreporter):
    for path in _WRITTEN:
        terminalreporter.write_line(f"benchmark results written to {path} "
                                    f"(table: python bench/summarize.py {path})")
