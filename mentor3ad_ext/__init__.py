"""mentor3ad_ext: fast point-cloud ops, exact anomaly-detection metrics and the Mentor3AD model.

Importing works without the compiled extension; the first fast-op call then raises an
ImportError that says how to build it. See build_info().
"""
from __future__ import annotations

__version__ = "0.1.0"

from ._info import build_info, get_num_threads, set_num_threads  # noqa: E402
from .metrics import aupro, evaluate, image_auroc, pixel_auroc  # noqa: E402
from .ops import (  # noqa: E402
    Groups,
    group_points,
    interpolate_features,
    interpolate_to_grid,
    weighted_gather,
    KNN,
    ball_query,
    estimate_normals,
    estimate_normals_organized,
    fpfh,
    fpfh_organized,
    knn_gather,
    knn_points,
    grid_to_points,
    points_to_grid,
    sample_farthest_points,
    set_value_checks,
    value_checks,
)

__all__ = [
    "__version__",
    "build_info",
    "get_num_threads",
    "set_num_threads",
    "set_value_checks",
    "value_checks",
    "sample_farthest_points",
    "KNN",
    "knn_points",
    "knn_gather",
    "ball_query",
    "weighted_gather",
    "interpolate_features",
    "interpolate_to_grid",
    "Groups",
    "group_points",
    "points_to_grid",
    "grid_to_points",
    "estimate_normals",
    "estimate_normals_organized",
    "fpfh",
    "fpfh_organized",
    "aupro",
    "image_auroc",
    "pixel_auroc",
    "evaluate",
]
