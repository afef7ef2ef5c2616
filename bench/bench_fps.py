"""Farthest point sampling: ours vs the torch reference, fpsample, Open3D (and torch_cluster,
pytorch3d where installed), at the sizes of issue 3, on CPU and on CUDA when available.

Cases and peers are defined in mentor3ad_ext/bench/fps.py (shared with `python -m
mentor3ad_ext.bench`); this module only turns them into pytest-benchmark tests. The 1M-point case
is marked slow (MENTOR3AD_BENCH_FULL=1 to run it).
"""
import pytest

from _harness import DEVICES, measure, params
from mentor3ad_ext.bench.fps import SIZES, fps_case

CASES = [fps_case(size, device) for device in DEVICES for size in SIZES]


@pytest.mark.parametrize("case_impl", params(CASES))
def test_fps(benchmark, case_impl):
    measure(benchmark, case_impl)
