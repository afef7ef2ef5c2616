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

from .. import metrics
from ..models.config import DEFAULT_VOTE_MAPS, MAPS, Mentor3ADConfig
from ..models.heads import VotingModule
from .features import SampleFeatures

METRIC_KEYS = ("i_auroc", "p_auroc", "aupro@0.3", "aupro@0.01")


def compute_metrics(maps: torch.Tensor, gts: torch.Tensor, scores: torch.Tensor) -> dict[str, float]:
    """The four metrics of one class: maps ``(N, S, S)``, gts ``(N, S, S)`` bool, scores ``(N,)``."""
    out = metrics.evaluate(maps.float().numpy(), gts.bool().numpy(),
                           image_scores=scores.float().numpy(), fpr_limits=(0.3, 0.01))
    return {k: float(out[k]) for k in METRIC_KEYS}


def image_auroc(scores, labels) -> float:
    """I-AUROC, or NaN when ``labels`` hold a single class."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return math.nan
    return float(metrics.image_auroc(scores, labels))


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
    voted = tuple(m for m in DEFAULT_VOTE_MAPS if m in available)
    if len(voted) > 1:
        out["soft vote"] = config.replace(maps=voted, vote="soft")
        out["hard vote"] = config.replace(maps=voted, vote="hard")
    if len(available) > len(voted):
        out["soft vote, all maps"] = config.replace(maps=tuple(available), vote="soft")
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
