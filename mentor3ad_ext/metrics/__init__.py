"""Exact anomaly-detection metrics (AUPRO, pixel/image AUROC) on CPU and CUDA."""
from .functional import aupro, evaluate, image_auroc, pixel_auroc  # noqa: F401

__all__ = ["aupro", "image_auroc", "pixel_auroc", "evaluate"]
