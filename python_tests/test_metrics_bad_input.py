"""Metrics: every bad input is a ValueError/TypeError that names the argument and what was wrong."""
import numpy as np
import pytest
import torch

import mentor3ad_ext as m

from conftest import DEVICES

MAPS = np.random.default_rng(0).random((2, 6, 7)).astype(np.float32)
MASKS = np.zeros((2, 6, 7), dtype=bool)
MASKS[0, 1:3, 1:3] = True


def _masks(**kv):
    k = MASKS.astype(np.uint8)
    for idx, v in kv.items():
        k[tuple(int(c) for c in idx.strip("_").split("_"))] = v
    return k


@pytest.mark.parametrize("fn", [m.aupro, m.pixel_auroc, m.evaluate])
@pytest.mark.parametrize("maps,masks,exc,match", [
    (MAPS, MASKS[:, :5], ValueError, r"same shape, got anomaly_maps \(2, 6, 7\) and gt_masks \(2, 5, 7\)"),
    (MAPS[0, 0], MASKS[0, 0], ValueError, r"must have shape \(N, H, W\) .*got \(7,\)"),
    (MAPS[:0], MASKS[:0], ValueError, r"empty input: anomaly_maps has shape \(0, 6, 7\)"),
    (MAPS, _masks(_0_2_2=2), ValueError, r"gt_masks must be binary \(0/1\), found 2 at index \(0, 2, 2\)"),
    (MAPS, MASKS * 3.5, ValueError, r"gt_masks must be binary \(0/1\), found 3.5 at index \(0, 1, 1\)"),
    (MAPS, -MASKS.astype(np.int64), ValueError, r"gt_masks must be binary \(0/1\), found -1"),
    ("maps", MASKS, TypeError, "anomaly_maps must be a torch.Tensor or a numpy array, got str"),
    (MAPS, None, TypeError, "gt_masks must be a torch.Tensor or a numpy array, got NoneType"),
    (MAPS.astype(bool), MASKS, TypeError, "anomaly_maps must be real-valued scores"),
    ([MAPS[0], MAPS[1, :4]], MASKS, ValueError, r"entries of anomaly_maps must all have the same shape"),
])
def test_bad_shapes_and_values(fn, maps, masks, exc, match):
    with pytest.raises(exc, match=match):
        fn(maps, masks)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", [(1, 4, 5), (0, 2, 2)])  # a normal pixel, a defect pixel
def test_non_finite_scores(device, bad, where):
    maps = torch.from_numpy(MAPS.copy())
    maps[where] = bad
    with pytest.raises(ValueError, match=rf"anomaly_maps contains NaN or Inf \(1 values, first {bad} at index \({', '.join(map(str, where))}\)\)"):
        m.aupro(maps.to(device), torch.from_numpy(MASKS).to(device))


@pytest.mark.parametrize("device", DEVICES)
def test_undefined_metrics(device):
    maps = torch.from_numpy(MAPS).to(device)
    none = torch.zeros(2, 6, 7, dtype=torch.bool, device=device)
    every = torch.ones(2, 6, 7, dtype=torch.bool, device=device)
    with pytest.raises(ValueError, match=r"aupro: the metric is undefined: gt_masks has no defect \(1\) pixel"):
        m.aupro(maps, none)
    with pytest.raises(ValueError, match=r"aupro: the metric is undefined: gt_masks has no normal \(0\) pixel"):
        m.aupro(maps, every)
    with pytest.raises(ValueError, match=r"pixel_auroc: ROC AUC is undefined: only one class .*every label is 0"):
        m.pixel_auroc(maps, none)
    with pytest.raises(ValueError, match=r"evaluate: the metric is undefined: gt_masks has no defect"):
        m.evaluate(maps, none)
    with pytest.raises(ValueError, match=r"image_auroc: ROC AUC is undefined: only one class is present in labels \(every label is 1"):
        m.image_auroc([0.1, 0.4], [1, 1])
    # Every image anomalous: the image AUROC of evaluate() is undefined.
    masks = torch.zeros(2, 6, 7, dtype=torch.bool, device=device)
    masks[:, 0, 0] = True
    with pytest.raises(ValueError, match=r"only one class is present in labels"):
        m.evaluate(maps, masks)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(fpr_limit=0.0), ValueError, r"fpr_limit must lie in \(0, 1\], got 0.0"),
    (dict(fpr_limit=1.5), ValueError, r"fpr_limit must lie in \(0, 1\], got 1.5"),
    (dict(fpr_limit=float("nan")), ValueError, r"fpr_limit must lie in \(0, 1\]"),
    (dict(fpr_limit="0.3"), TypeError, "fpr_limit must be a float"),
    (dict(protocol="anomalib"), ValueError, r"protocol must be 'exact' or 'mvtec3d', got 'anomalib'"),
    (dict(protocol="mvtec3d", num_thresholds=1), ValueError, "num_thresholds must be an int >= 2, got 1"),
    (dict(protocol="mvtec3d", num_thresholds=2.5), ValueError, "num_thresholds must be an int >= 2, got 2.5"),
])
def test_bad_options(kw, exc, match):
    with pytest.raises(exc, match=match):
        m.aupro(MAPS, MASKS, **kw)


def test_bad_image_and_evaluate_arguments():
    with pytest.raises(ValueError, match=r"scores and labels must be 1-D of the same length, got scores \(3,\) and labels \(2,\)"):
        m.image_auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match=r"empty input: scores has shape \(0,\)"):
        m.image_auroc([], [])
    with pytest.raises(ValueError, match=r"labels must be binary \(0/1\), found 2"):
        m.image_auroc([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match=r"image_scores must have shape \(2,\) \(one per map\), got \(3,\)"):
        m.evaluate(MAPS, MASKS, image_scores=np.zeros(3))
    with pytest.raises(ValueError, match=r"fpr_limits must lie in \(0, 1\], got 2.0"):
        m.evaluate(MAPS, MASKS, fpr_limits=(0.3, 2.0))
    with pytest.raises(ValueError, match=r"image_auroc: scores contains NaN or Inf"):
        m.image_auroc([0.1, float("nan")], [0, 1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_mixed_devices():
    with pytest.raises(ValueError, match="gt_masks is on cpu but anomaly_maps is on cuda"):
        m.aupro(torch.from_numpy(MAPS).cuda(), torch.from_numpy(MASKS))
