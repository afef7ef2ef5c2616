"""The benchmark tooling itself: checks that catch wrong results, memory measurement, the results
summary and the CLI. (The benchmarks are in bench/; these tests keep their machinery honest.)"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mentor3ad_ext.bench import OURS, PEER, REFERENCE, Case, Impl, main
from mentor3ad_ext.bench._measure import device_slug, peak_memory, rounds_for
from mentor3ad_ext.bench.fps import FpsSize, fps_case, ref_samples, torch_fps_loop

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import _harness  # noqa: E402
import summarize  # noqa: E402


def _small_case():
    return fps_case(FpsSize(2, 3000, 64), "cpu", seed=1)


def test_fps_checks_accept_right_and_reject_wrong_results():
    case = _small_case()
    ours = case.impl("mentor3ad_ext")
    out = ours.prepare()()
    assert ours.check(out) == "= reference"
    wrong = out.clone()
    wrong[1, 10], wrong[1, 11] = out[1, 11], out[1, 10]
    with pytest.raises(AssertionError, match="cloud 1, sample 10"):
        ours.check(wrong)
    ref = case.impl("reference (torch, per-sample loop)")
    assert ref.check(ref.prepare()()) == "= ours"


def test_fps_property_check_for_peers():
    case = _small_case()
    from mentor3ad_ext.bench.fps import _check_property

    good = case.impl("mentor3ad_ext").prepare()().numpy()
    assert "same order as ours" in _check_property("peer", good, _data(case))
    repeated = good.copy()
    repeated[0, 5] = repeated[0, 4]
    with pytest.raises(AssertionError, match="repeats"):
        _check_property("peer", repeated, _data(case))
    out_of_range = good.copy()
    out_of_range[1, 3] = 3000
    with pytest.raises(AssertionError, match="outside"):
        _check_property("peer", out_of_range, _data(case))
    shuffled = good.copy()
    shuffled[0, [7, 8]] = shuffled[0, [8, 7]]
    assert "order differs from ours at cloud 0, sample 7" in _check_property("peer", shuffled, _data(case))


def _data(case):
    return case.data


def test_torch_loop_is_the_textbook_order():
    case = _small_case()
    pts = _data(case).points
    assert np.array_equal(torch_fps_loop(pts, 64).numpy(), _data(case).ours())


def test_reference_is_scaled_down_only_beyond_its_budget():
    assert ref_samples(FpsSize(1, 16_000, 1024), "cpu") == 1024
    big = FpsSize(1, 1_000_000, 4096)
    k = ref_samples(big, "cpu")
    assert 16 <= k < 4096
    case = fps_case(big, "cpu")
    ref = case.impl("reference (torch, per-sample loop)")
    assert ref.scale == pytest.approx(4096 / k) and f"first {k} of 4096" in ref.note


def test_peak_memory_sees_an_allocation_on_cpu():
    n = 40 << 20
    out, extra, method, seconds = peak_memory(lambda: np.ones(n // 8), "cpu")
    assert out.nbytes == n and seconds >= 0
    if method == "unavailable":
        pytest.skip("no /proc on this platform")
    assert 0.9 * n <= extra <= n + (16 << 20), (extra, method)
    _, small, _, _ = peak_memory(lambda: 1 + 1, "cpu")
    assert small < (4 << 20)


def test_rounds_and_slug():
    assert rounds_for(0.001, 1.0, 50) == 50
    assert rounds_for(5.0, 1.0, 50) == 1
    assert rounds_for(0.9, 1.0, 50) == 3  # a median of one call is no median
    assert device_slug("cpu").startswith("cpu-") and device_slug("cpu").endswith("c")


def _record(impl, role, median, mem=1024):
    return {"op": "fps", "case": "N=1k K=8", "device": "cpu", "device_name": "x", "sizes": {"N": 1000},
            "impl": impl, "role": role, "package": None, "version": None, "median_s": median,
            "min_s": median * 0.9, "iqr_s": 0.0, "rounds": 3, "measured_median_s": median, "scale": 1.0,
            "peak_mem_bytes": mem, "mem_method": "rss-hwm", "check": "ok", "note": ""}


def test_results_file_and_summary_table(tmp_path):
    records = [_record("ours", OURS, 0.002), _record("peer", PEER, 0.010), _record("ref", REFERENCE, 0.5),
               {**_record("missing", PEER, 0), "skipped": "missing not importable"}]
    del records[-1]["median_s"]
    cases = _harness.summarize_cases(records)
    assert [p["ratio_vs_ours"] for p in cases[0]["peers"]] == pytest.approx([5.0, 250.0])
    assert cases[0]["skipped"] == [{"impl": "missing", "reason": "missing not importable"}]
    paths = _harness.write_results(tmp_path, records, full=False, started="t0")
    again = _harness.write_results(tmp_path, records, full=False, started="t1")
    assert len(paths) == 1 and len(again) == 1 and paths[0] != again[0]  # never overwrites
    doc = json.loads(paths[0].read_text())
    assert doc["versions"]["torch"] == torch.__version__ and doc["build_info"]["package_version"]
    text = summarize.table(doc)
    assert "| fps N=1k K=1024" not in text and "| **ours** | 2 ms |" in text
    assert "| peer | 10 ms | 9 ms | 5x | 5x |" in text and "missing (missing not importable)" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{summarize.BEGIN}\nold\n{summarize.END}\nb\n")
    summarize.replace_block(readme, text)
    body = readme.read_text()
    assert "old" not in body and "| peer |" in body and body.startswith("a\n") and body.endswith("b\n")


def test_cli_quick_runs_and_flags_a_wrong_result(capsys, monkeypatch):
    from mentor3ad_ext.bench import _core

    def tiny(device, quick):
        case = _small_case()
        case.impls = case.impls[:2]  # ours and the reference
        return [case]

    monkeypatch.setitem(_core.CLI_CASES, "fps", tiny)
    assert main(["--op", "fps", "--target-s", "0.01"]) == 0
    text = capsys.readouterr().out
    assert "mentor3ad_ext" in text and "= reference" in text and "vs ours" in text

    def broken(device, quick):
        case = _small_case()
        ours = case.impls[0]
        case.impls = case.impls[:1]
        case.impls[0] = Impl(ours.name, OURS, lambda: (lambda: torch.zeros(2, 64, dtype=torch.int64)), ours.check)
        return [case]

    monkeypatch.setitem(_core.CLI_CASES, "fps", broken)
    assert main(["--op", "fps", "--target-s", "0.01"]) == 1
    assert "WRONG" in capsys.readouterr().out


def test_missing_peer_is_skipped_with_a_note(capsys, monkeypatch):
    from mentor3ad_ext.bench import _core

    def with_missing(device, quick):
        case = _small_case()
        case.impls = case.impls[:1] + [Impl("nope", PEER, lambda: (lambda: None), lambda out: "",
                                            requires=("surely_not_a_module_xyz",))]
        return [case]

    monkeypatch.setitem(_core.CLI_CASES, "fps", with_missing)
    assert main(["--op", "fps", "--target-s", "0.01"]) == 0
    assert "skipped: surely_not_a_module_xyz not importable" in capsys.readouterr().out
    assert isinstance(Case, type)


def _env_without_omp_policy():
    """The environment for a bench subprocess: without OMP_WAIT_POLICY, and without the
    PYTEST_XDIST_* variables of a `pytest -n` worker, which make pytest-benchmark in the child
    think it runs under xdist and disable every benchmark (no results written)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY" and not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = str(BENCH.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_cli_entry_point_sets_the_omp_policy_and_runs():
    import subprocess

    r = subprocess.run([sys.executable, "-m", "mentor3ad_ext.bench", "--help"], cwd=BENCH.parent,
                       env=_env_without_omp_policy(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage: python -m mentor3ad_ext.bench" in r.stdout, r.stderr


def test_pytest_bench_session_writes_results(tmp_path):
    import subprocess

    env = dict(_env_without_omp_policy(), MENTOR3AD_BENCH_TARGET_S="0.02")
    r = subprocess.run([sys.executable, "-m", "pytest", "bench/bench_fps.py", "-q", "-p", "no:warnings",
                        "-k", "fps-N16k_K1024-cpu-mentor3ad_ext or fps-N16k_K1024-cpu-torch_cluster",
                        "--bench-results", str(tmp_path)],
                       cwd=BENCH.parent, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (path,) = tmp_path.glob("cpu-*.json")
    doc = json.loads(path.read_text())
    (case,) = doc["cases"]
    ours = case["ours"]
    assert case["case"] == "N=16k K=1024" and ours["check"] == "= reference", ours
    # (peak memory >= 0 only: a warm call may reuse resident pages; test_peak_memory_* covers it)
    assert ours["rounds"] >= 3 and ours["median_s"] > 0 and ours["peak_mem_bytes"] is not None, ours
    assert doc["settings"]["env"]["OMP_WAIT_POLICY"] == "PASSIVE"
    if case["skipped"]:  # torch_cluster is not installed here: recorded as skipped with the reason
        assert case["skipped"][0]["impl"] == "torch_cluster.fps"
