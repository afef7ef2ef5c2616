"""Exact kNN: ours vs the torch reference, torch cdist+topk, scipy cKDTree, faiss IndexFlatL2 and
Open3D, at the sizes of the kNN issue, on CPU and on CUDA when available.

Cases and peers are defined in mentor3ad_ext/bench/knn.py (shared with `python -m
mentor3ad_ext.bench`); this module only turns them into pytest-benchmark tests.
"""
import pytest

from _harness import DEVICES, measure, params
from mentor3ad_ext.bench.knn import SIZES, knn_case

CASES = [knn_case(size, device) for device in DEVICES for size in SIZES]


@pytest.mark.parametrize("case_impl", params(CASES))
def test_knn(benchmark, case_impl):
    measure(benchmark, case_impl)
