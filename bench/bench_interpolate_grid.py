"""interpolate_to_grid: ours vs the plain-torch composition (cdist + topk + gather + IDW + masked
pooling) at the issue-5 size (B=8, G=1024, C=1152, 224x224 -> 28x28, k=3), forward and
forward + backward, and vs the in-package reference at a small size; CPU and CUDA when available.

Cases are defined in mentor3ad_ext/bench/interpolate_grid.py (shared with `python -m
mentor3ad_ext.bench`). The plain-torch peer needs about 1 GiB per cloud (8 GiB at B=8);
MENTOR3AD_BENCH_INTERP_B sets a smaller batch for both ours and the peer.
"""
import pytest

from _harness import DEVICES, measure, params
from mentor3ad_ext.bench.interpolate_grid import SIZES, interpolate_grid_case

CASES = [interpolate_grid_case(size, device) for device in DEVICES for size in SIZES]


@pytest.mark.parametrize("case_impl", params(CASES))
def test_interpolate_to_grid(benchmark, case_impl):
    measure(benchmark, case_impl)
