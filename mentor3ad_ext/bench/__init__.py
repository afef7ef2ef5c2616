"""Benchmark cases of the fast ops against the in-package references and installed peers.

`python -m mentor3ad_ext.bench [--quick]` prints a table (see _cli.py); the recorded
pytest-benchmark suite in the source tree's bench/ builds on the same cases.

To add an op: write mentor3ad_ext/bench/<op>.py with a function returning `Case`s (see fps.py),
decorate the CLI entry point with `@register("<op>")`, and import the module below.
"""
from ._core import CLI_CASES, OURS, PEER, REFERENCE, Case, Impl, register, synced, synchronize  # noqa: F401
from . import fps  # noqa: F401,E402  (registers its cases)
from . import knn, ball_query, interpolate_grid  # noqa: F401,E402  (register their cases)
from ._cli import main  # noqa: F401,E402
