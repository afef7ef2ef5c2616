"""Exact metrics: hand-computable cases, the official references, scikit-learn, exact rationals."""
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import label
from sklearn.metrics import roc_auc_score

import mentor3ad_ext as m
from mentor3ad_ext import metrics as M
from mentor3ad_ext.reference import metrics as R

from conftest import DEVICES, FLOAT_DTYPES, HAS_CUDA

LIMITS = [0.3, 0.01, 0.05, 1.0]


def _t(a, device="cpu", dtype=None):
    t = torch.as_tensor(np.asarray(a))
    return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)


def random_set(n, h, w, seed, *, defects=True, ties=False, dtype=np.float32):
    """Smooth-ish maps with random blobs; `ties` quantises scores to a few levels."""
    rng = np.random.default_rng(seed)
    maps = rng.random((n, h, w)).astype(np.float64)
    masks = np.zeros((n, h, w), dtype=bool)
    if defects:
        for i in range(n):
            for _ in range(rng.integers(0, 4)):
                y, x = rng.integers(0, h), rng.integers(0, w)
                masks[i, max(0, y - rng.integers(0, 4)):y + rng.integers(1, 5), max(0, x - rng.integers(0, 4)):x + rng.integers(1, 5)] = True
        masks |= rng.random((n, h, w)) < 0.01  # isolated pixels, diagonal contacts
        masks[2::3] = False  # defect-free images
        masks[0, 0, 0] = True
        maps += masks * rng.uniform(0.0, 1.0)
    if ties:
        maps = np.round(maps * 4) / 4
    return maps.astype(dtype), masks


def exact_aupro(maps, masks, limit):
    """The official curve in exact rational arithmetic: the value every implementation approximates."""
    maps = np.asarray(maps, dtype=np.float64)
    weights, normal = [], []
    regions = 0
    for mp, mk in zip(maps, np.asarray(masks)):
        lab, n = label(mk, np.ones((3, 3), dtype=int))
        sizes = np.bincount(lab.ravel())
        regions += int(n)
        for s, l in zip(mp.ravel().tolist(), lab.ravel().tolist()):  # Python numbers: no int64 overflow
            weights.append((s, Fraction(0) if l == 0 else Fraction(1, int(sizes[l]))))
            normal.append(l == 0)
    n_neg = int(sum(normal))
    groups = {}
    for (s, w), isn in zip(weights, normal):
        g = groups.setdefault(s, [0, Fraction(0)])
        g[0] += int(isn)
        g[1] += w
    xs, ys = [Fraction(0)], [Fraction(0)]
    for s in sorted(groups, reverse=True):
        xs.append(xs[-1] + Fraction(groups[s][0], n_neg))
        ys.append(ys[-1] + groups[s][1] / regions)
    L = Fraction(limit)
    area = Fraction(0)
    for i in range(1, len(xs)):
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        if x1 <= L:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            if x0 < L:
                y_at = y0 + (y1 - y0) * (L - x0) / (x1 - x0)
                area += (L - x0) * (y0 + y_at) / 2
            break
    return float(area / L)


# ---- hand-computable cases -------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_perfect_map_is_one(device):
    masks = np.zeros((3, 8, 8), bool)
    masks[0, 2:5, 2:4] = True
    masks[2, 7, 0] = True
    maps = masks * 2.0 + np.random.default_rng(0).random((3, 8, 8))  # every defect above every normal
    for lim in LIMITS:
        assert m.aupro(_t(maps, device), _t(masks, device), lim) == 1.0
        assert m.aupro(_t(maps, device), _t(masks, device), lim, protocol="mvtec3d") == 1.0
    assert m.pixel_auroc(_t(maps, device), _t(masks, device)) == 1.0
    assert m.image_auroc(maps.reshape(3, -1).max(1), [1, 0, 1]) == 1.0


@pytest.mark.parametrize("device", DEVICES)
def test_constant_map_is_the_diagonal(device):
    maps = np.full((2, 5, 5), 0.7, np.float32)
    masks = np.zeros((2, 5, 5), bool)
    masks[1, 1:3, 1:3] = True
    for lim in LIMITS:  # one tie group: straight line (0,0)-(1,1), area lim^2/2
        assert m.aupro(_t(maps, device), _t(masks, device), lim) == pytest.approx(lim / 2, abs=1e-15)
    assert m.pixel_auroc(_t(maps, device), _t(masks, device)) == 0.5


@pytest.mark.parametrize("device", DEVICES)
def test_regions_are_averaged_not_pixels(device):
    # A found 1-pixel region and a missed 100-pixel region: PRO 1/2 per region (1/101 per pixel).
    maps = np.full((1, 30, 30), 0.5)
    masks = np.zeros((1, 30, 30), bool)
    masks[0, 0, 0] = True
    maps[0, 0, 0] = 1.0
    masks[0, 10:20, 10:20] = True
    maps[0, 10:20, 10:20] = 0.0
    for lim in (0.3, 0.01):
        assert m.aupro(_t(maps, device), _t(masks, device), lim) == 0.5
    # Normal pixels all tie at 0.5: the mvtec3d thresholds sit there too.
    assert m.aupro(_t(maps, device), _t(masks, device), 0.3, protocol="mvtec3d") == 0.5


@pytest.mark.parametrize("device", DEVICES)
def test_diagonal_neighbours_form_one_region(device):
    maps = np.zeros((1, 8, 8))
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # touch only at a corner: one 8-connected region
    masks[0, 5, 5] = True
    maps[0, 0, 0] = 1.0  # half of the chain found, the single pixel missed
    # 8-connectivity: regions {chain: 2 px, single: 1 px} -> PRO after the top score = (1/2) / 2.
    # (4-connectivity would give three regions and 1/3.)
    assert m.aupro(_t(maps, device), _t(masks, device), 1.0) == pytest.approx(exact_aupro(maps, masks, 1.0), abs=1e-15)
    v = m.aupro(_t(maps, device), _t(masks, device), 0.3, return_curve=True)[1]
    assert v[1][1] == 0.25 and v[0][1] == 0.0


@pytest.mark.parametrize("device", DEVICES)
def test_ties_collapse_to_one_point(device):
    maps = np.array([[[1.0, 1.0, 0.0, 0.0]]])
    masks = np.array([[[1, 0, 1, 0]]], np.uint8)  # two separate 1-pixel regions
    # Curve (0,0) -> (1/2, 1/2) -> (1, 1): a straight line.
    assert m.aupro(_t(maps, device), _t(masks, device), 1.0) == 0.5
    assert m.aupro(_t(maps, device), _t(masks, device), 0.3) == pytest.approx(0.15, abs=1e-16)
    assert m.pixel_auroc(_t(maps, device), _t(masks, device)) == 0.5 == roc_auc_score([1, 0, 1, 0], [1, 1, 0, 0])
    fpr, pro = m.aupro(_t(maps, device), _t(masks, device), return_curve=True)[1]
    np.testing.assert_array_equal(fpr, [0, 0.5, 1, 1])
    np.testing.assert_array_equal(pro, [0, 0.5, 1, 1])


@pytest.mark.parametrize("device", DEVICES)
def test_defect_free_images_only_add_false_positives(device):
    maps = np.array([[[1.0, 0.0]], [[2.0, 2.0]]])
    masks = np.array([[[1, 0]], [[0, 0]]], bool)
    # Thresholds 2, 1, 0: (2/3, 0), (2/3, 1), (1, 1) -> area 1/3 at limit 1, 0 below 2/3.
    assert m.aupro(_t(maps, device), _t(masks, device), 1.0) == pytest.approx(1 / 3, abs=1e-16)
    assert m.aupro(_t(maps, device), _t(masks, device), 0.3) == 0.0
    assert m.aupro(_t(maps[:1], device), _t(masks[:1], device), 1.0) == 1.0


def test_limit_exactly_on_a_vertex_and_between():
    maps = np.array([[[4, 3, 2, 1, 0]]], np.float64)
    masks = np.array([[[0, 1, 0, 0, 0]]], bool)  # n_neg = 4: vertices at FPR 0, 1/4, 1/2, ...
    for lim in (0.25, 0.5, 0.3, 0.01, 1.0):
        assert m.aupro(maps, masks, lim) == pytest.approx(exact_aupro(maps, masks, lim), abs=1e-16)
        assert m.aupro(maps, masks, lim) == pytest.approx(R.aupro(maps, masks, lim), abs=1e-15)


# ---- against the references ------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False)])
def test_random_against_reference(device, dtype, seed, ties):
    maps, masks = random_set(6, 24, 31, seed, ties=ties, dtype=dtype)
    tm, tk = _t(maps, device), _t(masks, device)
    for lim in LIMITS:
        assert m.aupro(tm, tk, lim) == pytest.approx(R.aupro(maps, masks, lim), rel=1e-12, abs=1e-14)
        assert m.aupro(tm, tk, lim, protocol="mvtec3d") == pytest.approx(
            R.aupro(maps, masks, lim, protocol="mvtec3d"), rel=1e-12, abs=1e-14)
    assert m.pixel_auroc(tm, tk) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    got = m.evaluate(tm, tk)
    ref = R.evaluate(maps, masks)
    assert got.keys() == ref.keys() == {"i_auroc", "p_auroc", "aupro@0.3", "aupro@0.01"}
    for k in got:
        assert got[k] == pytest.approx(ref[k], abs=1e-12), k


@pytest.mark.parametrize("seed", [3, 4])
def test_exact_rational_value(seed):
    maps, masks = random_set(3, 9, 11, seed, ties=seed == 4, dtype=np.float64)
    for lim in LIMITS:
        assert m.aupro(maps, masks, lim) == pytest.approx(exact_aupro(maps, masks, lim), rel=4e-16, abs=1e-17)


def test_mvtec3d_num_thresholds_and_curve():
    maps, masks = random_set(4, 20, 20, 5)
    for k in (2, 7, 100, 1000):
        v, (fpr, pro) = m.aupro(maps, masks, 0.3, protocol="mvtec3d", num_thresholds=k, return_curve=True)
        rv, (rf, rp) = R.aupro(maps, masks, 0.3, protocol="mvtec3d", num_thresholds=k, return_curve=True)
        assert v == pytest.approx(rv, rel=1e-12, abs=1e-15)
        np.testing.assert_array_equal(fpr, rf)
        np.testing.assert_allclose(pro, rp, rtol=1e-13, atol=1e-15)
    # The two protocols differ: 100 thresholds sample the curve, and its first point is not (0, 0).
    assert m.aupro(maps, masks, 0.3, protocol="mvtec3d") != m.aupro(maps, masks, 0.3)


def test_exact_curve_matches_reference_curve():
    maps, masks = random_set(5, 16, 16, 6, ties=True)
    _, (fpr, pro) = m.aupro(maps, masks, return_curve=True)
    rf, rp = R.compute_pro(maps, masks)
    assert fpr[0] == pro[0] == 0 and fpr[-1] == pro[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= 0)
    # Our vertices lie on the reference polyline, and the polyline between them is straight.
    ref_pts = {(round(a, 12), round(b, 12)) for a, b in zip(rf, rp)}
    assert all((round(a, 12), round(b, 12)) in ref_pts for a, b in zip(fpr, pro))
    for lim in (0.3, 1.0):
        assert R.trapezoid(fpr, pro, lim) == pytest.approx(R.trapezoid(rf, rp, lim), abs=1e-13)
    assert len(fpr) <= len(rf)


def test_official_float32_fprs_differ_only_slightly():
    maps, masks = random_set(8, 32, 32, 7)
    off = R.trapezoid(*R.compute_pro(maps, masks, fpr_dtype=np.float32), x_max=0.3) / 0.3
    assert abs(m.aupro(maps, masks) - off) < 1e-6


@pytest.mark.parametrize("device", DEVICES)
def test_image_auroc_against_sklearn(device):
    rng = np.random.default_rng(8)
    for n, ties in [(2, False), (50, False), (300, True)]:
        scores = rng.random(n)
        if ties:
            scores = np.round(scores * 5)
        labels = rng.random(n) < 0.4
        labels[0], labels[-1] = True, False
        assert m.image_auroc(_t(scores, device), _t(labels, device)) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert m.image_auroc(list(scores), list(labels.astype(int))) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_evaluate_options():
    maps, masks = random_set(6, 20, 20, 9)
    img = np.random.default_rng(1).random(6)
    got = m.evaluate(maps, masks, image_scores=img, fpr_limits=(0.3, 0.05, 1.0))
    assert set(got) == {"i_auroc", "p_auroc", "aupro@0.3", "aupro@0.05", "aupro@1"}
    assert got["i_auroc"] == pytest.approx(roc_auc_score(masks.reshape(6, -1).any(1), img), abs=1e-12)
    assert got["aupro@0.05"] == pytest.approx(m.aupro(maps, masks, 0.05), abs=0)
    assert got["aupro@1"] == pytest.approx(m.aupro(maps, masks, 1.0), abs=0)


# ---- input forms, determinism, no mutation ---------------------------------------------------

def test_input_forms_agree():
    maps, masks = random_set(3, 12, 14, 10, dtype=np.float64)
    want = m.aupro(maps, masks)
    assert m.aupro(torch.from_numpy(maps), torch.from_numpy(masks)) == want
    assert m.aupro(list(maps), list(masks)) == want
    assert m.aupro(maps[:, None], masks[:, None]) == want  # (N, 1, H, W)
    assert m.aupro(maps, masks.astype(np.int64)) == want
    assert m.aupro(maps, masks.astype(np.float32)) == want
    assert m.aupro(maps, masks.astype(np.uint8)) == want
    # Non-contiguous views give the same numbers.
    t = torch.from_numpy(np.ascontiguousarray(maps.transpose(0, 2, 1))).transpose(1, 2)
    k = torch.from_numpy(np.ascontiguousarray(masks.transpose(0, 2, 1))).transpose(1, 2)
    assert not t.is_contiguous() and m.aupro(t, k) == want
    # A single (H, W) map.
    assert m.aupro(maps[0], masks[0]) == pytest.approx(R.aupro(maps[:1], masks[:1]), abs=1e-13)
    # Half precision maps are computed in float32 (exactly the same values).
    h = torch.from_numpy(maps).half()
    assert m.aupro(h, masks) == m.aupro(h.float(), masks)


def test_inputs_are_not_modified():
    maps, masks = random_set(3, 10, 10, 11)
    maps_t = torch.from_numpy(maps.copy())
    masks_t = torch.from_numpy(masks.copy())
    before = (maps.copy(), masks.copy(), maps_t.clone(), masks_t.clone())
    m.evaluate(maps, masks)
    m.aupro(maps_t, masks_t, return_curve=True)
    m.aupro(maps_t, masks_t.to(torch.int32), protocol="mvtec3d")
    m.pixel_auroc(maps_t.half(), masks_t)
    assert np.array_equal(maps, before[0]) and np.array_equal(masks, before[1])
    assert torch.equal(maps_t, before[2]) and torch.equal(masks_t, before[3])
    ro = maps.copy()
    ro.flags.writeable = False
    m.aupro(ro, masks)


def test_thread_count_does_not_change_bits():
    maps, masks = random_set(40, 64, 64, 12)
    masks[1::3, 8:56, 8:56] = True  # > 2^14 defect pixels: the parallel radix sort path
    assert masks.sum() > 2 ** 14
    want = m.evaluate(maps, masks, fpr_limits=(0.3, 0.01, 0.2))
    old = m.get_num_threads()
    try:
        for n in (1, 3):
            m.set_num_threads(n)
            assert m.evaluate(maps, masks, fpr_limits=(0.3, 0.01, 0.2)) == want
    finally:
        m.set_num_threads(old)
    assert want["aupro@0.3"] == pytest.approx(R.aupro(maps, masks, 0.3), abs=1e-12)


def test_dense_masks_many_unions():
    # Dense random masks: long snaking components whose provisional labels need many unions.
    rng = np.random.default_rng(13)
    masks = rng.random((4, 40, 40)) < 0.45
    maps = rng.random((4, 40, 40))
    for lim in (0.3, 1.0):
        assert m.aupro(maps, masks, lim) == pytest.approx(R.aupro(maps, masks, lim), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), levels=st.integers(1, 6),
       seed=st.integers(0, 2 ** 16), lim=st.sampled_from([0.3, 0.01, 0.5, 1.0]))
def test_property_against_reference(n, h, w, levels, seed, lim):
    rng = np.random.default_rng(seed)
    maps = rng.integers(0, levels, (n, h, w)).astype(np.float32)  # many ties
    masks = rng.random((n, h, w)) < 0.3
    if masks.all() or not masks.any():
        masks.flat[0] = not masks.flat[0]
    if masks.all() or not masks.any():
        return
    assert m.aupro(maps, masks, lim) == pytest.approx(R.aupro(maps, masks, lim), rel=1e-12, abs=1e-15)
    assert m.aupro(maps, masks, lim) == pytest.approx(exact_aupro(maps, masks, lim), rel=4e-16, abs=1e-17)
    assert m.aupro(maps, masks, lim, protocol="mvtec3d", num_thresholds=5) == pytest.approx(
        R.aupro(maps, masks, lim, protocol="mvtec3d", num_thresholds=5), rel=1e-12, abs=1e-15)
    assert m.pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)


def test_public_api():
    assert m.aupro is M.aupro and m.evaluate is M.evaluate
    assert m.image_auroc is M.image_auroc and m.pixel_auroc is M.pixel_auroc
    for name in ("aupro", "image_auroc", "pixel_auroc", "evaluate"):
        assert name in m.__all__ and name in M.__all__


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("seed,ties", [(20, False), (21, True)])
def test_cpu_cuda_parity(dtype, seed, ties):
    maps, masks = random_set(30, 48, 40, seed, ties=ties)
    tm = torch.from_numpy(maps).to(dtype)
    tk = torch.from_numpy(masks)
    lims = (0.3, 0.01, 0.1, 1.0)
    assert m.evaluate(tm.cuda(), tk.cuda(), fpr_limits=lims) == m.evaluate(tm, tk, fpr_limits=lims)
    c_cpu = m.aupro(tm, tk, return_curve=True)
    c_gpu = m.aupro(tm.cuda(), tk.cuda(), return_curve=True)
    assert c_cpu[0] == c_gpu[0]
    np.testing.assert_array_equal(c_cpu[1][0], c_gpu[1][0])
    np.testing.assert_array_equal(c_cpu[1][1], c_gpu[1][1])
    assert m.aupro(tm.cuda(), tk.cuda(), protocol="mvtec3d") == m.aupro(tm, tk, protocol="mvtec3d")
