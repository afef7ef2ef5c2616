"""Slow, obviously correct versions of every op and metric (plain torch / numpy).

Tests compare the fast paths against these; benchmarks use them as the baseline; the model can
run on them (`ops="reference"`) to measure the end-to-end speed-up.
"""
from .fps import sample_farthest_points  # noqa: F401
from . import metrics  # noqa: F401  (aupro, pixel_auroc, image_auroc, evaluate: the official algorithms)
