"""Synthetic test sets for the metric benchmarks: smooth anomaly maps with planted defects.

Scores resemble real model output: a smooth low-level background (blurred noise), defect regions
(random ellipses and a few thin scratches, 8-connected blobs of very different sizes) whose
scores are raised by a random, partly overlapping amount, so that the PRO curve is non-trivial
(AUPRO ~0.8-0.95). Half of the images are defect-free, as in MVTec test sets.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def make_test_set(n: int, h: int, w: int, seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, h, w)).astype(np.float32)
    maps = gaussian_filter(noise, sigma=(0, max(h / 100, 1.0), max(w / 100, 1.0)))
    maps = (maps - maps.min()) / (np.ptp(maps) + 1e-12)
    masks = np.zeros((n, h, w), dtype=bool)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(0, n, 2):  # every other image has defects
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(0, h), rng.integers(0, w)
            ry, rx = rng.uniform(0.01, 0.12) * h, rng.uniform(0.01, 0.12) * w
            masks[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if rng.random() < 0.5:  # a thin diagonal scratch: diagonal-touching pixels, one region
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            k = np.arange(min(h - y0, w - x0, h // 3))
            masks[i, y0 + k, x0 + k] = True
        lift = rng.uniform(0.1, 0.6)
        blob = gaussian_filter(masks[i].astype(np.float32), sigma=2.0)
        maps[i] += lift * blob + 0.15 * masks[i] * rng.random((h, w)).astype(np.float32)
    return maps.astype(dtype), masks
