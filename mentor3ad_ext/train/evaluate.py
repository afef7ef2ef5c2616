"""Evaluation: per-class I-AUROC, P-AUROC, AUPRO@0.3 and @0.01, per-defect-type detection, and
the vote variants of a trained model (single-modality maps, product, mentor, soft/hard vote).

Anomaly maps are at the image resolution (224 x 224) and are compared with the gt masks resized
with nearest neighbour (what the data layer produces).  The numbers come from
`mentor3ad_ext.metrics` (exact AUPRO, AUROC).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..models.config import MAPS, Mentor3ADConfig
from ..models.heads import VotingModule
from .features import SampleFeatures

METRIC_KEYS = ("i_auroc", "p_auroc", "aupro@0.3", "aupro@0.01")


def _metrics_module():
    try:
        from .. import metrics
    except ImportError:
        return None
    return metrics


def compute_metrics(maps: torch.Tensor, gts: torch.Tensor, scores: torch.Tensor) -> dict[str, float]:
    """The four metrics of one class: maps ``(N, S, S)``, gts ``(N, S, S)`` bool, scores ``(N,)``."""
    metrics = _metrics_module()
    maps_np = maps.float().numpy()
    gts_np = gts.bool().numpy()
    scores_np = scores.float().numpy()
    if metrics is not None:
        out = metrics.evaluate(maps_np, gts_np, image_scores=scores_np, fpr_limits=(0.3, 0.01))
        return {k: float(out[k]) for k in METRIC_KEYS}
    return _fallback_metrics(maps_np, gts_np, scores_np)  # pragma: no cover - interim only


def image_auroc(scores, labels) -> float:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return math.nan
    metrics = _metrics_module()
    if metrics is not None:
        return float(metrics.image_auroc(scores, labels))
    return _fallback_auroc(scores, labels)  # pragma: no cover - interim only


def per_defect_auroc(scores: torch.Tensor, defects: Sequence[str]) -> dict[str, float]:
    """I-AUROC of every defect type against the good samples."""
    scores = np.asarray(scores, dtype=np.float64)
    defects = list(defects)
    good = np.array([d == "good" for d in defects])
    out = {}
    for d in sorted(set(defects) - {"good"}):
        sel = good | np.array([x == d for x in defects])
        out[d] = image_auroc(scores[sel], ~good[sel])
    return out


def evaluate_predictions(pred: dict, features: Sequence[SampleFeatures]) -> dict:
    gts = torch.stack([f.gt for f in features])
    metrics = compute_metrics(pred["map"], gts, pred["score"])
    metrics["per_defect"] = per_defect_auroc(pred["score"], [f.defect for f in features])
    return metrics


# ---------------------------------------------------------------------------------------------
# Vote variants of one trained model
# ---------------------------------------------------------------------------------------------

def vote_variants(config: Mentor3ADConfig) -> dict[str, Mentor3ADConfig]:
    """The VM settings a trained model can be evaluated with without retraining."""
    available = [m for m in MAPS if m != "mentor" or config.use_mentor]
    out = {f"{m} map": config.replace(maps=(m,), vote="none") for m in available}
    if len(available) > 1:
        out["soft vote"] = config.replace(maps=tuple(available), vote="soft")
        out["hard vote"] = config.replace(maps=tuple(available), vote="hard")
    return out


def evaluate_variants(vm: VotingModule, norm_maps: dict[str, torch.Tensor],
                      features: Sequence[SampleFeatures], variants: dict[str, Mentor3ADConfig],
                      chunk: int = 16) -> dict[str, dict]:
    """Metrics of every variant from the normalised candidate maps ``{name: (N, S, S)}``."""
    out = {}
    for name, cfg in variants.items():
        v = vm.with_vote(cfg)
        finals, scores = [], []
        n = next(iter(norm_maps.values())).shape[0]
        for s in range(0, n, chunk):
            f, sc = v.combine({k: m[s:s + chunk] for k, m in norm_maps.items()})
            finals.append(f)
            scores.append(sc)
        pred = {"map": torch.cat(finals), "score": torch.cat(scores)}
        out[name] = evaluate_predictions(pred, features)
    return out


# ---------------------------------------------------------------------------------------------
# Interim fallback (used only while mentor3ad_ext.metrics is not available)
# ---------------------------------------------------------------------------------------------

def _fallback_auroc(scores, labels) -> float:  # pragma: no cover
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def _fallback_metrics(maps, gts, scores) -> dict[str, float]:  # pragma: no cover
    from scipy import ndimage
    from sklearn.metrics import roc_auc_score

    labels = gts.reshape(len(gts), -1).any(1)
    out = {"i_auroc": _fallback_auroc(scores, labels) if 0 < labels.sum() < len(labels) else math.nan,
           "p_auroc": float(roc_auc_score(gts.ravel(), maps.ravel())) if gts.any() else math.nan}
    thresholds = np.quantile(maps[~gts], np.linspace(0, 1, 400)[::-1]) if (~gts).any() else []
    regions = []
    for i in range(len(gts)):
        lab, n = ndimage.label(gts[i], structure=np.ones((3, 3)))
        for r in range(1, n + 1):
            regions.append((i, lab == r))
    normal = maps[~gts]
    for limit in (0.3, 0.01):
        fprs, pros = [], []
        for t in thresholds:
            fprs.append(float((normal > t).mean()))
            pros.append(float(np.mean([(maps[i][m] > t).mean() for i, m in regions])) if regions else 0.0)
        fprs, pros = np.array(fprs), np.array(pros)
        keep = fprs <= limit
        if keep.sum() < 2 or not regions:
            out[f"aupro@{limit}"] = math.nan
            continue
        f, p = fprs[keep], pros[keep]
        f = np.append(f, limit)
        p = np.append(p, np.interp(limit, fprs, pros))
        out[f"aupro@{limit}"] = float(np.trapezoid(p, f) / limit)
    return out
