"""Exact anomaly-detection metrics: AUPRO, pixel AUROC, image AUROC and `evaluate`.

All functions accept torch tensors (CPU or CUDA) or numpy arrays and return Python floats. The
work runs where the maps are (C++ threads on CPU, kernels on CUDA); see csrc/metrics/metrics.h
for the algorithm and mentor3ad_ext.reference.metrics for the plain official versions.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch

from . import _table as T
from ._inputs import maps_and_masks, mask_tensor, score_tensor, shape_str, to_tensor

PROTOCOLS = ("exact", "mvtec3d")


def aupro(anomaly_maps, gt_masks, fpr_limit: float = 0.3, *, protocol: str = "exact",
          num_thresholds: int = 100, return_curve: bool = False):
    """Area under the per-region-overlap (PRO) curve up to `fpr_limit`, divided by `fpr_limit`.

    Args:
        anomaly_maps: (N, H, W) scores (float16/32/64; (H, W) and (N, 1, H, W) are accepted too),
            a torch tensor on CPU or CUDA or a numpy array.
        gt_masks: same shape, bool or 0/1 integers; regions are the 8-connected components of
            each mask (as scipy.ndimage.label with a 3x3 structure in the official code).
        fpr_limit: integration limit in (0, 1]; 0.3 is the usual value, 0.01 in recent work.
        protocol: "exact" (default): the MVTec AD evaluation: every distinct score is a
            threshold, tied scores are one curve point, the curve runs (0, 0) -> (1, 1).
            "mvtec3d": the MVTec 3D-AD evaluation script most 3D papers ran (M3DM, BTF, CFM):
            `num_thresholds` thresholds at equally spaced positions of the sorted normal-pixel
            scores, FPR = 1 - (position + 1) / n_normal, PRO = fraction of each region above the
            threshold, plus (1, 1). It reproduces published numbers; it differs from "exact"
            because its first point is (0, PRO at the highest normal score) instead of (0, 0)
            and because 100 thresholds sample the curve coarsely (see README: typically 1e-3
            to 1e-2 at fpr_limit=0.3, more at 0.01).
        num_thresholds: thresholds of the "mvtec3d" protocol (>= 2; the script's default 100).
        return_curve: also return the curve (fpr, pro) as float64 numpy arrays, ascending FPR.
            For "exact" these are the curve's vertices from (0, 0) to (1, 1); runs of
            thresholds that only add normal pixels (horizontal) or only defect pixels (vertical)
            are one segment, which changes no area.

    Returns:
        The AUPRO as a float, or (aupro, (fpr, pro)) with return_curve=True.

    Raises:
        ValueError: mismatched shapes, empty input, non-binary masks, NaN/Inf scores, no normal
            pixel or no defect region (the metric is undefined), a limit outside (0, 1].
    """
    op = "aupro"
    fpr_limit = T.check_fpr_limit(op, "fpr_limit", fpr_limit)
    if protocol not in PROTOCOLS:
        raise ValueError(f"{op}: protocol must be 'exact' or 'mvtec3d', got {protocol!r}")
    if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) or num_thresholds < 2:
        # one threshold gives a curve without an FPR-0 point, which the official script cannot integrate
        raise ValueError(f"{op}: num_thresholds must be an int >= 2, got {num_thresholds!r}")
    maps, masks = maps_and_masks(op, anomaly_maps, gt_masks)
    b = T.build(op, maps, masks)
    T.require_pro_defined(op, b)
    if protocol == "mvtec3d":
        fprs, pros, _ = T.mvtec3d_curve(b, int(num_thresholds))
        value = T.official_trapezoid(fprs, pros, fpr_limit) / fpr_limit
        curve = (np.asarray(fprs, dtype=np.float64), np.asarray(pros, dtype=np.float64))
    else:
        res = b.table.query([T.c_limit(fpr_limit, b.n_neg)], [])
        value = T.pro_areas(b, [fpr_limit], res)[0]
        curve = None
        if return_curve:
            fpr, pro, _ = b.table.curve()
            curve = (np.append(fpr, 1.0), np.append(pro, 1.0))
    return (value, curve) if return_curve else value


def pixel_auroc(anomaly_maps, gt_masks) -> float:
    """Pixel-level ROC AUC over all pixels of all maps; tied scores collapse to one ROC point,
    exactly as scikit-learn's roc_auc_score. Same inputs and errors as `aupro`."""
    op = "pixel_auroc"
    maps, masks = maps_and_masks(op, anomaly_maps, gt_masks)
    b = T.build(op, maps, masks, need_regions=False)  # the ROC needs no connected components
    T.require_two_classes(op, b, "gt_masks")
    return T.roc_value(b, b.table.query([], []))


def image_auroc(scores, labels) -> float:
    """Image-level ROC AUC of (N,) scores against (N,) binary labels (1 = anomalous); ties as in
    scikit-learn's roc_auc_score. The N values are small, so this always runs on the CPU."""
    op = "image_auroc"
    s = to_tensor(op, "scores", scores)
    y = to_tensor(op, "labels", labels)
    if s.dim() != 1 or y.dim() != 1 or s.shape != y.shape:
        raise ValueError(f"{op}: scores and labels must be 1-D of the same length, got scores {shape_str(s.shape)} "
                         f"and labels {shape_str(y.shape)}")
    if s.numel() == 0:
        raise ValueError(f"{op}: empty input: scores has shape {shape_str(s.shape)}")
    if s.dtype.is_complex or s.dtype == torch.bool:
        raise TypeError(f"{op}: scores must be real numbers, got dtype {str(s.dtype).replace('torch.', '')}")
    s = score_tensor(s.cpu()).reshape(-1, 1, 1)
    y = mask_tensor(op, "labels", y.cpu()).reshape(-1, 1, 1)
    b = T.build(op, s, y, mask_name="labels", map_name="scores", need_regions=False)
    T.require_two_classes(op, b, "labels")
    return T.roc_value(b, b.table.query([], []))


def evaluate(anomaly_maps, gt_masks, image_scores=None, fpr_limits: Sequence[float] = (0.3, 0.01)) -> Dict[str, float]:
    """All standard numbers of a test set in one pass over the pixels.

    Returns {"i_auroc", "p_auroc", "aupro@<limit>" for each limit} (keys formatted with `:g`, so
    "aupro@0.3" and "aupro@0.01"). `image_scores` (N,) default to the maximum of each map; an image
    is anomalous when its mask has a defect pixel. AUPRO uses the exact protocol.
    """
    op = "evaluate"
    if isinstance(fpr_limits, (int, float)):
        fpr_limits = (fpr_limits,)
    limits = [T.check_fpr_limit(op, "fpr_limits", v) for v in fpr_limits]
    maps, masks = maps_and_masks(op, anomaly_maps, gt_masks)
    if image_scores is None:
        image_scores = maps.reshape(maps.shape[0], -1).amax(dim=1)
    else:
        image_scores = to_tensor(op, "image_scores", image_scores)
        if image_scores.shape != (maps.shape[0],):
            raise ValueError(f"{op}: image_scores must have shape ({maps.shape[0]},) (one per map), got "
                             f"{shape_str(image_scores.shape)}")
    b = T.build(op, maps, masks)
    T.require_pro_defined(op, b)
    image_labels = masks.reshape(masks.shape[0], -1).amax(dim=1)
    out = {"i_auroc": image_auroc(image_scores, image_labels)}
    res = b.table.query([T.c_limit(v, b.n_neg) for v in limits], [])
    out["p_auroc"] = T.roc_value(b, res)
    for v, a in zip(limits, T.pro_areas(b, limits, res)):
        out[f"aupro@{v:g}"] = a
    return out
