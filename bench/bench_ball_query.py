"""Ball query: ours vs the torch reference, scipy cKDTree.query_ball_point and Open3D's hybrid
search (nearest K within the radius: property check only), N=100k points, Q=4096 queries, K=32,
radius 0.06 (about 84 points per ball), on CPU and on CUDA when available.

Cases and peers are defined in mentor3ad_ext/bench/ball_query.py (shared with `python -m
mentor3ad_ext.bench`); this module only turns them into pytest-benchmark tests.
"""
import pytest

from _harness import DEVICES, measure, params
from mentor3ad_ext.bench.ball_query import SIZES, ball_query_case

CASES = [ball_query_case(size, device) for device in DEVICES for size in SIZES]


@pytest.mark.parametrize("case_impl", params(CASES))
def test_ball_query(benchmark, case_impl):
    measure(benchmark, case_impl)
