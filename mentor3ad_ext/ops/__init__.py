"""Op adapters: validate, allocate, dispatch to `_C`, autograd. Public names re-exported at top level."""
from ._checks import set_value_checks, value_checks  # noqa: F401
from .fps import sample_farthest_points  # noqa: F401
from .projection import grid_to_points, points_to_grid  # noqa: F401
