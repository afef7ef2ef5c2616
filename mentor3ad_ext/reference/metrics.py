"""Plain NumPy/SciPy versions of the anomaly-detection metrics: the official algorithms, slow.

* `compute_pro` / `trapezoid` / `aupro(protocol="exact")` follow the MVTec AD evaluation code
  (``pro_curve_util.compute_pro`` and ``generic_util.trapezoid``): ground-truth regions are the
  8-connected components of each mask (``scipy.ndimage.label`` with a 3x3 structure); every pixel
  changes the FPR (normal) or its region's overlap (1 / region size, averaged over all regions);
  all scores are sorted descending and tied scores collapse to one point; the curve runs from
  (0, 0) to (1, 1) and is integrated with the trapezoid rule up to the FPR limit, linearly
  interpolated there, and divided by the limit. Differences from the published script, which do
  not change the algorithm: 64-bit pixel counts instead of uint32 (which overflow past 4G pixels)
  and float64 FPRs; the script casts its FPRs to float32 (``fpr_dtype=np.float32`` reproduces
  that, a difference of about 1e-7).
* `aupro(protocol="mvtec3d")` follows the MVTec 3D-AD evaluation script (``au_pro_util.py``, also
  copied by M3DM, BTF, CFM): `num_thresholds` thresholds at equally spaced positions of the sorted
  normal-pixel scores, FPR = 1 - (position + 1) / n_normal, PRO = mean over regions of the fraction
  of the region's pixels scoring strictly above the threshold, plus the end point (1, 1).
* `image_auroc` / `pixel_auroc`: ROC AUC with tied scores collapsed to one point, as
  scikit-learn's ``roc_auc_score`` (``roc_curve`` then the trapezoid rule).

Inputs: NumPy arrays (torch tensors are converted), maps (N, H, W) float, masks (N, H, W) 0/1.
"""
from __future__ import annotations

from bisect import bisect
from typing import Dict, Sequence, Tuple

import numpy as np
from scipy.ndimage import label

_STRUCTURE = np.ones((3, 3), dtype=int)


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def trapezoid(x, y, x_max=None) -> float:
    """Area under the curve (x, y) up to x_max, linearly interpolating at x_max (official code)."""
    x = np.array(x, dtype=np.float64)
    y = np.array(y, dtype=np.float64)
    finite = np.logical_and(np.isfinite(x), np.isfinite(y))
    x, y = x[finite], y[finite]
    correction = 0.0
    if x_max is not None:
        if x_max not in x:
            ins = bisect(x, x_max)
            assert 0 < ins < len(x)
            y_interp = y[ins - 1] + ((y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1]))
            correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
        mask = x <= x_max
        x, y = x[mask], y[mask]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def compute_pro(anomaly_maps, ground_truth_maps, fpr_dtype=np.float64) -> Tuple[np.ndarray, np.ndarray]:
    """The exact PRO curve (fprs, pros) of the MVTec AD evaluation, including (0, 0) and (1, 1)."""
    anomaly_maps = _np(anomaly_maps)
    ground_truth_maps = _np(ground_truth_maps)
    shape = anomaly_maps.shape
    fp_changes = np.zeros(shape, dtype=np.int64)
    pro_changes = np.zeros(shape, dtype=np.float64)
    num_ok_pixels = 0
    num_gt_regions = 0
    for gt_ind, gt_map in enumerate(ground_truth_maps):
        labeled, n_components = label(gt_map, _STRUCTURE)
        num_gt_regions += n_components
        ok_mask = labeled == 0
        num_ok_pixels += int(np.sum(ok_mask))
        fp_change = np.zeros_like(gt_map, dtype=np.int64)
        fp_change[ok_mask] = 1
        pro_change = np.zeros_like(gt_map, dtype=np.float64)
        for k in range(n_components):
            region_mask = labeled == (k + 1)
            pro_change[region_mask] = 1.0 / np.sum(region_mask)
        fp_changes[gt_ind] = fp_change
        pro_changes[gt_ind] = pro_change
    scores = anomaly_maps.ravel()
    order = np.argsort(scores)[::-1]
    scores_sorted = scores[order]
    fprs = (np.cumsum(fp_changes.ravel()[order]).astype(fpr_dtype) / fpr_dtype(num_ok_pixels)).astype(np.float64)
    pros = np.cumsum(pro_changes.ravel()[order]) / num_gt_regions
    keep = np.append(np.diff(scores_sorted) != 0, np.True_)
    fprs = np.clip(fprs[keep], None, 1.0)
    pros = np.clip(pros[keep], None, 1.0)
    return np.concatenate(([0.0], fprs, [1.0])), np.concatenate(([0.0], pros, [1.0]))


def compute_pro_mvtec3d(anomaly_maps, ground_truth_maps, num_thresholds: int = 100) -> Tuple[list, list]:
    """The PRO curve of the MVTec 3D-AD evaluation script at `num_thresholds` thresholds."""
    anomaly_maps = _np(anomaly_maps)
    ground_truth_maps = _np(ground_truth_maps)
    components = []  # per region: its scores, sorted ascending
    ok_scores = []
    for gt_map, prediction in zip(ground_truth_maps, anomaly_maps):
        labeled, n_components = label(gt_map, _STRUCTURE)
        ok_scores.append(prediction[labeled == 0].astype(np.float64))
        for k in range(n_components):
            components.append(np.sort(prediction[labeled == (k + 1)]))
    ok = np.sort(np.concatenate(ok_scores))
    positions = np.linspace(0, len(ok) - 1, num=num_thresholds, dtype=int)
    index = [0] * len(components)
    fprs, pros = [1.0], [1.0]
    for pos in positions:
        threshold = ok[pos]
        fpr = 1.0 - (pos + 1) / len(ok)
        pro = 0.0
        for c, comp in enumerate(components):
            while index[c] < len(comp) and comp[index[c]] <= threshold:
                index[c] += 1
            pro += 1.0 - index[c] / len(comp)
        pro /= len(components)
        fprs.append(fpr)
        pros.append(pro)
    return fprs[::-1], pros[::-1]


def aupro(anomaly_maps, gt_masks, fpr_limit: float = 0.3, *, protocol: str = "exact",
          num_thresholds: int = 100, return_curve: bool = False):
    """Area under the PRO curve up to `fpr_limit`, divided by `fpr_limit` (official algorithms)."""
    if protocol == "exact":
        fprs, pros = compute_pro(anomaly_maps, gt_masks)
    elif protocol == "mvtec3d":
        fprs, pros = compute_pro_mvtec3d(anomaly_maps, gt_masks, num_thresholds)
    else:
        raise ValueError(f"aupro: protocol must be 'exact' or 'mvtec3d', got {protocol!r}")
    value = trapezoid(fprs, pros, x_max=fpr_limit) / fpr_limit
    if return_curve:
        return value, (np.asarray(fprs, dtype=np.float64), np.asarray(pros, dtype=np.float64))
    return value


def roc_auc(scores, labels) -> float:
    """ROC AUC with ties collapsed, as scikit-learn's roc_auc_score (roc_curve + trapezoid)."""
    scores = _np(scores).ravel().astype(np.float64)
    labels = _np(labels).ravel().astype(bool)
    order = np.argsort(scores, kind="mergesort")[::-1]
    s, y = scores[order], labels[order]
    ends = np.r_[np.where(np.diff(s))[0], y.size - 1]
    tps = np.cumsum(y)[ends]
    fps = (ends + 1) - tps
    tpr = np.r_[0, tps] / tps[-1]
    fpr = np.r_[0, fps] / fps[-1]
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))


def image_auroc(scores, labels) -> float:
    return roc_auc(scores, labels)


def pixel_auroc(anomaly_maps, gt_masks) -> float:
    return roc_auc(anomaly_maps, gt_masks)


def evaluate(anomaly_maps, gt_masks, image_scores=None, fpr_limits: Sequence[float] = (0.3, 0.01)) -> Dict[str, float]:
    maps = _np(anomaly_maps)
    masks = _np(gt_masks)
    if image_scores is None:
        image_scores = maps.reshape(maps.shape[0], -1).max(axis=1)
    labels = masks.reshape(masks.shape[0], -1).any(axis=1)
    out = {"i_auroc": image_auroc(image_scores, labels), "p_auroc": pixel_auroc(maps, masks)}
    fprs, pros = compute_pro(maps, masks)
    for lim in fpr_limits:
        out[f"aupro@{lim:g}"] = trapezoid(fprs, pros, x_max=lim) / lim
    return out
