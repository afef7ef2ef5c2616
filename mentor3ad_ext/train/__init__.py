"""Training, evaluation, reports and scale-out of Mentor3AD (see docs/model.md).

* `pipeline`: `TrainRun`, `run_training`, `run_evaluation` (what the CLI calls);
* `features`: feature extraction with the fp16 on-disk cache;
* `trainer`: the training loop (Adam, seeds, AMP, DDP, resume);
* `checkpoint`: atomic checkpoints with config and metrics;
* `evaluate`, `report`: metrics, vote variants, results tables and overlays;
* `distributed`: torchrun / process-group set-up.
"""
from __future__ import annotations

from .pipeline import TrainRun, run_evaluation, run_training  # noqa: F401

__all__ = ["TrainRun", "run_training", "run_evaluation"]
