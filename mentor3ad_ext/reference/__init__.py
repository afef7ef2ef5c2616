"""Slow, obviously correct versions of every op and metric (plain torch / numpy).

Tests compare the fast paths against these; benchmarks use them as the baseline; the model can
run on them (`ops="reference"`) to measure the end-to-end speed-up.
"""
from .fps import sample_farthest_points  # noqa: F401
from .knn import ball_query, knn_gather, knn_points  # noqa: F401
from .interpolate import group_points, interpolate_features, weighted_gather  # noqa: F401
from .interpolate_grid import interpolate_to_grid  # noqa: F401
from .projection import grid_to_points, points_to_grid  # noqa: F401
from .normals import estimate_normals  # noqa: F401
from .fpfh import fpfh  # noqa: F401
from . import metrics  # noqa: F401  (aupro, pixel_auroc, image_auroc, evaluate: the official algorithms)
