"""Op adapters: validate, allocate, dispatch to `_C`, autograd. Public names re-exported at top level."""
from ._checks import set_value_checks, value_checks  # noqa: F401
from .fps import sample_farthest_points  # noqa: F401
from .knn import KNN, knn_gather, knn_points  # noqa: F401
from .ball_query import ball_query  # noqa: F401
from .weighted_gather import weighted_gather  # noqa: F401
from .interpolate import interpolate_features  # noqa: F401
from .group import Groups, group_points  # noqa: F401
from .interpolate_grid import interpolate_to_grid  # noqa: F401
from .projection import grid_to_points, points_to_grid  # noqa: F401
from .normals import estimate_normals, estimate_normals_organized  # noqa: F401
from .fpfh import fpfh, fpfh_organized  # noqa: F401
