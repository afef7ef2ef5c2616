"""The CPU KD-tree build (csrc/common/kdtree.h, select_nth.h) on the clouds that break naive
median selection: massive duplicates (a quadratic partition would take minutes here), sorted and
reverse-sorted coordinates, and NaN coordinates with value checks off (must not hang or crash).
Every op that builds a tree is checked against its reference."""
import pytest
import torch

import mentor3ad_ext as m
from mentor3ad_ext import reference as R


def _corners(n: int, D: int = 3) -> torch.Tensor:
    # 2^D distinct positions (the unit cube's corners), each repeated n / 2^D times, shuffled.
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 2, (1, n, D), generator=g).float()


def _line(n: int, reverse: bool) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float32)
    if reverse:
        t = t.flip(0)
    return torch.stack([t, 0.5 * t, torch.zeros(n)], -1)[None]


CLOUDS = {
    "corners": lambda: _corners(200_000),
    "corners_6d": lambda: _corners(100_000, 6),  # the kNN tree serves D <= 8 too
    "sorted_line": lambda: _line(200_000, False),
    "reversed_line": lambda: _line(200_000, True),
}


@pytest.mark.parametrize("cloud", list(CLOUDS))
def test_degenerate_clouds_match_reference(cloud):
    pts = CLOUDS[cloud]()
    idx = m.sample_farthest_points(pts, K=12)[1]
    assert torch.equal(idx, R.sample_farthest_points(pts, K=12)[1])
    q = pts[:, ::2000] + 0.25  # 100 queries: the tree path (the cell grid takes >= 512)
    got, want = m.knn_points(q, pts, K=5), R.knn_points(q, pts, K=5)
    assert torch.equal(got.idx, want.idx) and torch.equal(got.dists, want.dists)
    radius = 0.9 if cloud.startswith("corners") else 3.0
    got_b, want_b = m.ball_query(q, pts, K=7, radius=radius), R.ball_query(q, pts, K=7, radius=radius)
    assert torch.equal(got_b[1], want_b[1])


def test_nan_coordinates_with_checks_off_terminate():
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(1, 50_000, 3, generator=g)
    pts[torch.rand(pts.shape, generator=g) < 0.1] = float("nan")
    pts[0, :5000, 0] = float("nan")  # a run of NaN in one axis
    with m.value_checks(False):
        idx = m.sample_farthest_points(pts, K=32)[1]
        nn = m.knn_points(pts[:, :300], pts, K=8)
        bq = m.ball_query(pts[:, :300], pts, K=8, radius=0.1)
    for i in (idx, nn.idx, bq[1]):
        assert bool(((i >= -1) & (i < pts.shape[1])).all())
