"""The results report: ``results.json``, ``results.md`` and anomaly-map overlays.

``overlays/<class>/{best,worst}_<rank>_<defect>_<id>.png`` show ``rgb | gt | map`` side by side
(the map in a blue-to-red colour scale over the greyed image).  *Best* are the defective images
with the highest scores; *worst* are the images the score ranks worst (defective images scoring
below many normal ones, normal images scoring above many defective ones).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write_text
from .evaluate import METRIC_KEYS

HEADERS = {"i_auroc": "I-AUROC", "p_auroc": "P-AUROC", "aupro@0.3": "AUPRO@0.3",
           "aupro@0.01": "AUPRO@0.01"}


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def mean_metrics(per_class: dict) -> dict:
    out = {}
    for k in METRIC_KEYS:
        vals = [e[k] for e in per_class.values() if k in e and not math.isnan(e[k])]
        out[k] = float(np.mean(vals)) if vals else math.nan
    return out


def mean_per_defect(per_class: dict) -> dict:
    acc: dict[str, list] = {}
    for e in per_class.values():
        for d, v in e.get("per_defect", {}).items():
            if not math.isnan(v):
                acc.setdefault(d, []).append(v)
    return {d: float(np.mean(v)) for d, v in acc.items()}


def variant_means(per_class: dict) -> dict:
    names = []
    for e in per_class.values():
        for n in e.get("variants", {}):
            if n not in names:
                names.append(n)
    out = {}
    for n in names:
        sub = {c: e["variants"][n] for c, e in per_class.items() if n in e.get("variants", {})}
        out[n] = {**mean_metrics(sub), "per_defect": mean_per_defect(sub)}
    return out


def metrics_table(rows: dict[str, dict], first: str = "class") -> str:
    lines = [f"| {first} | " + " | ".join(HEADERS[k] for k in METRIC_KEYS) + " |",
             "|---|" + "---:|" * len(METRIC_KEYS)]
    for name, e in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(e.get(k)) for k in METRIC_KEYS) + " |")
    return "\n".join(lines)


def defect_table(rows: dict[str, dict], first: str = "class") -> str:
    defects = []
    for e in rows.values():
        for d in e:
            if d not in defects:
                defects.append(d)
    if not defects:
        return ""
    lines = [f"| {first} | " + " | ".join(defects) + " |", "|---|" + "---:|" * len(defects)]
    for name, e in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(e.get(d)) for d in defects) + " |")
    return "\n".join(lines)


def format_markdown(results: dict) -> str:
    per_class = results["classes"]
    cfg = results.get("config", {})
    ext = results.get("extractors", {})
    lines = ["# Mentor3AD results", "",
             f"config `{cfg.get('name')}`, dataset `{results.get('dataset')}` ({results.get('data')}), "
             f"ops `{results.get('ops')}`, device `{results.get('device')}`; extractors: rgb "
             f"`{ext.get('rgb', {}).get('name')}`, 3D `{ext.get('3d', {}).get('name')}`.", "",
             "## Metrics per class", "",
             metrics_table({**{c: e for c, e in per_class.items()}, "**mean**": results["mean"]}), ""]
    per_defect = {c: e.get("per_defect", {}) for c, e in per_class.items()}
    if any(per_defect.values()):
        lines += ["## Detection per defect type (I-AUROC, defect vs good)", "",
                  defect_table({**per_defect, "**mean**": mean_per_defect(per_class)}), ""]
    if results.get("variants"):
        lines += ["## Maps and votes of the trained model (mean over classes)", "",
                  metrics_table(results["variants"], first="map / vote"), "",
                  defect_table({n: v["per_defect"] for n, v in results["variants"].items()},
                               first="map / vote"), ""]
    if results.get("time_total_s") is not None:
        lines += [f"Total time {results['time_total_s']:.1f} s.", ""]
    return "\n".join(lines)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return _jsonable(x.item())
    if isinstance(x, torch.Tensor):
        return _jsonable(x.tolist())
    return x


def write_report(results: dict, predictions: dict, out: Path, overlays: int = 3) -> None:
    """Add means to ``results`` and write results.json, results.md and the overlays."""
    results["mean"] = mean_metrics(results["classes"])
    results["mean"]["per_defect"] = mean_per_defect(results["classes"])
    results["variants"] = variant_means(results["classes"])
    out.mkdir(parents=True, exist_ok=True)
    if overlays > 0:
        for c, (pred, feats, dataset) in predictions.items():
            write_overlays(out / "overlays" / c, pred, feats, dataset, overlays)
    atomic_write_text(out / "results.json", json.dumps(_jsonable(results), indent=2) + "\n")
    atomic_write_text(out / "results.md", format_markdown(results))


# ---------------------------------------------------------------------------------------------
# Overlays
# ---------------------------------------------------------------------------------------------

def colormap(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB, a jet-like blue-cyan-yellow-red scale."""
    x = np.clip(x, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return (np.concatenate([r, g, b], -1) * 255).astype(np.uint8)


def _denormalize(rgb: torch.Tensor, config) -> np.ndarray:
    img = rgb.float()
    if config.mean is not None:
        img = img * torch.tensor(config.std).view(3, 1, 1) + torch.tensor(config.mean).view(3, 1, 1)
    return (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def overlay_panel(rgb: np.ndarray, gt: np.ndarray, amap: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``rgb | gt | map`` as one uint8 image (H, 3W + 8, 3)."""
    H, W, _ = rgb.shape
    gt_img = np.repeat((gt.astype(np.uint8) * 255)[..., None], 3, -1)
    norm = (amap - lo) / max(hi - lo, 1e-12)
    heat = colormap(norm)
    grey = rgb.mean(-1, keepdims=True)
    blend = (0.45 * grey + 0.55 * heat).astype(np.uint8)
    sep = np.full((H, 4, 3), 255, np.uint8)
    return np.concatenate([rgb, sep, gt_img, sep, blend], axis=1)


def rank_errors(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image, the fraction of the other class it is ranked on the wrong side of."""
    err = np.zeros(len(scores))
    good, bad = scores[labels == 0], scores[labels == 1]
    for i, (s, y) in enumerate(zip(scores, labels)):
        if y == 1:
            err[i] = (good >= s).mean() if len(good) else 0.0
        else:
            err[i] = (bad <= s).mean() if len(bad) else 0.0
    return err


def write_overlays(folder: Path, pred: dict, feats, dataset, k: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    scores = pred["score"].numpy()
    labels = np.array([f.label for f in feats])
    maps = pred["map"]
    lo = float(torch.quantile(maps.flatten()[:: max(1, maps.numel() // 1_000_000)], 0.01))
    hi = float(maps.max())
    errors = rank_errors(scores, labels)
    bad_idx = np.flatnonzero(labels == 1)
    best = bad_idx[np.argsort(-scores[bad_idx], kind="stable")][:k]
    worst = np.argsort(-errors, kind="stable")[:k]
    written = []
    for tag, chosen in (("best", best), ("worst", worst)):
        for r, i in enumerate(chosen):
            f = feats[int(i)]
            sample = dataset[f.index]
            panel = overlay_panel(_denormalize(sample["rgb"], dataset.config), f.gt.numpy(),
                                  maps[int(i)].numpy(), lo, hi)
            path = folder / f"{tag}_{r}_{f.defect}_{f.sample_id}.png"
            Image.fromarray(panel).save(path)
            written.append(path)
    return written
