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


# ---- the table builds: every path, regions or not, joined vertical runs, labelling ------------

from mentor3ad_ext.metrics import _table as T  # noqa: E402
from mentor3ad_ext.ops import _launch  # noqa: E402


def _builds(maps, masks, **kw):
    """The table from every build path here: the CPU kernels, and the CUDA kernels (on a GPU, or
    under the emulator, which serves the CUDA entry points on CPU tensors). The tests that use it
    have "cuda" in their names, so that the GPU checks (pytest -k cuda) run them."""
    tm = torch.as_tensor(np.ascontiguousarray(maps))
    tk = torch.as_tensor(np.ascontiguousarray(masks)).to(torch.uint8)
    out = {}
    if _launch.EMULATED_CUDA:
        out["cuda-emulated"] = T.build("test", tm, tk, **kw)
        _launch.EMULATED_CUDA = False
        try:
            out["cpu"] = T.build("test", tm, tk, **kw)
        finally:
            _launch.EMULATED_CUDA = True
    else:
        out["cpu"] = T.build("test", tm, tk, **kw)
        if HAS_CUDA:
            out["cuda"] = T.build("test", tm.cuda(), tk.cuda(), **kw)
    return out


def _arrays(b):
    return {k: np.asarray(v) for k, v in b.table.arrays().items()}


def _same_tables(builds):
    """All paths built the same table and statistics; returns one of them."""
    items = list(builds.items())
    name0, b0 = items[0]
    a0 = _arrays(b0)
    for name, b in items[1:]:
        assert b.stats == b0.stats, (name, name0)
        a = _arrays(b)
        for k in a0:
            np.testing.assert_array_equal(a[k], a0[k], err_msg=f"{k}: {name} vs {name0}")
    return b0


def _wsum_ints(a):
    return [int(lo) | (int(hi) << 64) for lo, hi in a["wsum"]]


def _all_queries(b):
    """Every FPR limit count 0..n_neg and every threshold rank 1..n_neg (small tables only)."""
    n = b.n_neg
    return b.table.query(list(range(0, n + 1)), list(range(1, n + 1)))


def vertical_runs_set(seed, n=3, h=14, w=17, dtype=np.float64):
    """Maps with long vertical runs (defect scores above every normal one, distinct or tied among
    themselves), defect scores tied with normal ones, and defect-only groups separated by normal
    pixels (which must not be joined)."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 12, (n, h, w)) / 12.0  # normal scores on a coarse grid: ties
    masks = rng.random((n, h, w)) < 0.35
    masks[-1] = False  # a defect-free map
    masks[0, 0, 0] = True
    maps = levels.copy()
    kind = rng.integers(0, 4, (n, h, w))
    top = 2.0 + rng.random((n, h, w))  # above every normal score: one long vertical run
    top_tied = 2.0 + rng.integers(0, 5, (n, h, w)) / 5.0
    off_grid = levels + 1.0 / 48  # between two normal levels: defect-only groups with normals between
    maps = np.where(masks & (kind == 0), top, maps)
    maps = np.where(masks & (kind == 1), top_tied, maps)
    maps = np.where(masks & (kind == 2), off_grid, maps)
    # kind 3: on the even levels of the normal grid, tied with normal pixels (groups with eq > 0);
    # the odd levels hold normal pixels only, between defect-only groups (btw > 0).
    maps = np.where(masks & (kind == 3), np.floor(levels * 6) / 6, maps)
    return maps.astype(dtype), masks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [30, 31, 32])
def test_joined_runs_answer_like_the_plain_table_cpu_and_cuda(dtype, seed):
    maps, masks = vertical_runs_set(seed, dtype=dtype)
    joined = _same_tables(_builds(maps, masks))
    plain = _same_tables(_builds(maps, masks, join_runs=False))
    assert plain.stats["n_table"] == plain.stats["n_groups"] == joined.stats["n_groups"]
    assert joined.stats["n_table"] < plain.stats["n_groups"] // 2  # the case has long runs
    a, p = _arrays(joined), _arrays(plain)
    assert a["pos"].sum() == p["pos"].sum() == joined.n_pos
    assert a["btw"].sum() + a["eq"].sum() == joined.n_neg == p["btw"].sum() + p["eq"].sum()
    assert sum(_wsum_ints(a)) == sum(_wsum_ints(p))
    # Maximal: no two neighbouring groups of the joined table could still be joined ...
    eq, btw = a["eq"], a["btw"]
    assert not np.any((eq[1:] == 0) & (eq[:-1] == 0) & (btw[1:-1] == 0))
    # ... and the plain table has groups that were kept apart by normal pixels between them.
    pe, pb = p["eq"], p["btw"]
    assert np.any((pe[1:] == 0) & (pe[:-1] == 0) & (pb[1:-1] > 0))
    # Every query the metrics make, at every limit and rank: the same exact integers.
    assert _all_queries(joined) == _all_queries(plain)
    for c, d in zip(joined.table.curve(), plain.table.curve()):
        np.testing.assert_array_equal(c, d)
    for lim in (0.3, 0.05, 1.0):
        assert m.aupro(maps, masks, lim) == pytest.approx(exact_aupro(maps, masks, lim), rel=4e-16, abs=1e-17)
    v, (fpr, pro) = m.aupro(maps, masks, 0.3, return_curve=True)
    rf, rp = R.compute_pro(maps, masks)
    ref_pts = {(round(x, 12), round(y, 12)) for x, y in zip(rf, rp)}
    assert all((round(x, 12), round(y, 12)) in ref_pts for x, y in zip(fpr, pro))


def test_joined_runs_extremes_cpu_and_cuda():
    # Every defect score above every normal score: the whole defect set is one vertical run.
    rng = np.random.default_rng(33)
    maps = rng.random((2, 9, 9))
    masks = rng.random((2, 9, 9)) < 0.4
    maps[masks] += 5.0
    b = _same_tables(_builds(maps, masks))
    assert b.stats["n_table"] == 1 and b.stats["n_groups"] == masks.sum()
    assert m.aupro(maps, masks, 0.3) == 1.0 and m.pixel_auroc(maps, masks) == 1.0
    # Every defect score tied with a normal one: nothing to join.
    maps = np.round(rng.random((2, 9, 9)) * 3) / 3
    maps[:, 0, :4] = [0, 1 / 3, 2 / 3, 1]  # every level has a normal pixel
    masks[:, 0, :4] = False
    b = _same_tables(_builds(maps, masks))
    assert b.stats["n_table"] == b.stats["n_groups"]


@pytest.mark.parametrize("seed,ties,dtype", [(40, False, np.float32), (41, True, np.float64), (42, True, np.float32)])
def test_auroc_only_build_matches_the_full_build_cpu_and_cuda(seed, ties, dtype):
    maps, masks = random_set(5, 22, 37, seed, ties=ties, dtype=dtype)
    full = _same_tables(_builds(maps, masks))
    roc = _same_tables(_builds(maps, masks, need_regions=False))
    a, r = _arrays(full), _arrays(roc)
    for k in ("btw", "eq", "pos"):
        np.testing.assert_array_equal(a[k], r[k])
    assert not r["wsum"].any()
    assert {k: v for k, v in roc.stats.items() if k != "n_regions"} == {
        k: v for k, v in full.stats.items() if k != "n_regions"}
    assert roc.stats["n_regions"] == -1 and full.stats["n_regions"] > 0
    with pytest.raises(RuntimeError, match="without regions"):
        roc.n_regions
    assert roc.table.query([], [])["roc2"] == full.table.query([], [])["roc2"]
    assert m.pixel_auroc(maps, masks) == T.roc_value(full, full.table.query([], []))
    assert m.pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)


def test_builds_agree_on_every_path_cpu_and_cuda():
    # CPU and CUDA kernels (GPU or emulator) build bit-identical tables, with and without regions
    # and joined runs, through the pinned/host buffer and through the build's own vector.
    maps, masks = random_set(7, 26, 33, 43, ties=True)
    for kw in ({}, {"need_regions": False}, {"join_runs": False}, {"host_buffer": False}):
        builds = _builds(maps, masks, **kw)
        assert len(builds) >= 1
        _same_tables(builds)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_count_search_modes_agree_cuda(dtype):
    # Enough distinct defect scores that the shared-memory sample of count_normals takes every
    # 2nd (float32) or 4th (float64) key; the plain binary search (search=1) must count the same.
    rng = np.random.default_rng(44)
    maps = rng.random((1, 150, 150)).astype(dtype)
    masks = rng.random((1, 150, 150)) < 0.8
    maps[0, :, :10] = np.round(maps[0, :, :10] * 50) / 50  # ties between normal and defect scores
    tables = [_same_tables(_builds(maps, masks, search=s, join_runs=False)) for s in (0, 1)]
    assert tables[0].stats["n_groups"] > 12288
    a0, a1 = _arrays(tables[0]), _arrays(tables[1])
    for k in a0:
        np.testing.assert_array_equal(a0[k], a1[k])
    assert m.pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)


def test_profile_cpu_and_cuda(monkeypatch):
    maps, masks = random_set(3, 12, 14, 45)
    for name, b in _builds(maps, masks, profile=True).items():
        names = [p[0] for p in b.profile]
        assert names[-1] == "total" and all(ms >= 0 for _, ms, _ in b.profile), name
        where = {p[2] for p in b.profile}
        if name.startswith("cuda"):
            assert {"validate", "ccl merge", "count normals", "join vertical runs", "host: finalize"} <= set(names)
            assert where == {"gpu", "host"}
        else:
            assert {"count normals", "finalize"} <= set(names) and where == {"host"}
    assert T.build("test", torch.from_numpy(maps), torch.from_numpy(masks).to(torch.uint8)).profile is None
    monkeypatch.setattr(T, "LAST_PROFILE", None)
    monkeypatch.setenv("M3AD_METRICS_PROFILE", "1")
    m.pixel_auroc(maps, masks)
    assert T.LAST_PROFILE and T.LAST_PROFILE[-1][0] == "total"
    assert not any(p[0].startswith("ccl") or p[0].startswith("components") for p in T.LAST_PROFILE)


# Connected components: shapes whose union-find trees get deep (long chains, runs that meet
# late, diagonal-only contacts), on widths that do and do not split rows into 32-pixel windows.

def _spiral(n):
    """A 1-pixel-wide square spiral with 1-pixel gaps between its arms: one component."""
    a = np.zeros((n, n), bool)
    y, x, dy, dx = 0, 0, 0, 1
    lo_y, hi_y, lo_x, hi_x = 0, n - 1, 0, n - 1
    while lo_y <= hi_y and lo_x <= hi_x:
        a[lo_y, lo_x:hi_x + 1] = True
        a[lo_y:hi_y + 1, hi_x] = True
        if lo_y + 2 <= hi_y:
            a[hi_y, lo_x:hi_x + 1] = True
        if lo_x + 2 <= hi_x:
            a[lo_y + 2:hi_y + 1, lo_x] = True
        if lo_y + 2 <= hi_y and lo_x + 2 <= hi_x:
            a[lo_y + 2, lo_x:lo_x + 3] = True  # step inwards
        lo_y, hi_y, lo_x, hi_x = lo_y + 2, hi_y - 2, lo_x + 2, hi_x - 2
    return a


def _serpentine(h, w):
    a = np.zeros((h, w), bool)
    a[::2] = True
    for k, y in enumerate(range(1, h, 2)):
        a[y, w - 1 if k % 2 == 0 else 0] = True
    return a


def _shapes():
    rng = np.random.default_rng(46)
    out = {}
    out["spiral"] = _spiral(41)
    out["serpentine"] = _serpentine(29, 70)
    stair = np.zeros((40, 45), bool)
    k = np.arange(39)
    stair[k, k] = stair[k, k + 1] = True  # 4-connected staircase down to the right
    out["staircase"] = stair
    astair = np.zeros((40, 45), bool)
    astair[k, 44 - k] = astair[k, 43 - k] = True  # down to the left
    out["staircase_left"] = astair
    diag = np.zeros((37, 70), bool)
    k = np.arange(37)
    diag[k, k] = True  # 1-pixel diagonals: corner contacts only (8-connectivity)
    diag[k, 69 - k] = True  # anti-diagonal: joined through NE/NW only; crosses the other one
    diag[k, (2 * k + 5) % 70] = True  # steeper, wraps: several pieces
    out["diagonals"] = diag
    comb = np.zeros((30, 67), bool)
    comb[:, ::3] = True  # teeth, one run per row each, that meet only in the last row
    comb[-1] = True
    out["comb"] = comb
    out["comb_up"] = comb[::-1].copy()
    checker = (np.add.outer(np.arange(33), np.arange(35)) % 2) == 0  # one component, corners only
    out["checkerboard"] = checker
    full = np.ones((24, 35), bool)
    out["full"] = full
    out["dense_33"] = rng.random((40, 33)) < 0.55
    out["dense_64"] = rng.random((30, 64)) < 0.6
    out["dense_100"] = rng.random((25, 100)) < 0.45
    return out


def _region_sizes(masks):
    """Per pixel: the size of its 8-connected component (scipy.ndimage.label, as the official code)."""
    sizes = np.zeros(masks.shape, np.int64)
    total = 0
    for i, mk in enumerate(masks):
        lab, n = label(mk, np.ones((3, 3), dtype=int))
        total += n
        sizes[i] = np.bincount(lab.ravel())[lab] * (lab > 0)
    return sizes, total


@pytest.mark.parametrize("name", list(_shapes()))
def test_components_of_hard_shapes_cpu_and_cuda(name):
    shape = _shapes()[name]
    h, w = shape.shape
    rng = np.random.default_rng(47)
    # Map 0: the shape; map 1: the shape upside down, touching map 0's last row across the map
    # border (regions must not cross it); map 2: normal pixels (full regions leave none).
    masks = np.stack([shape, shape[::-1], np.zeros_like(shape)])
    masks[2, 0, 0] = True
    maps = rng.permutation(masks.size).reshape(masks.shape).astype(np.float64)  # distinct scores
    sizes, n_regions = _region_sizes(masks)
    builds = _builds(maps, masks, join_runs=False)
    b = _same_tables(builds)
    assert b.n_regions == n_regions
    # One group per defect pixel, in ascending score order: its weight is 2^96 // region size.
    order = np.argsort(maps[masks], kind="stable")
    want = [(1 << 96) // int(s) for s in sizes[masks][order]]
    assert _wsum_ints(_arrays(b)) == want
    for lim in (0.3, 1.0):
        assert m.aupro(maps, masks, lim) == pytest.approx(R.aupro(maps, masks, lim), rel=1e-12, abs=1e-15)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 40), p=st.floats(0.2, 0.9), seed=st.integers(0, 2 ** 16))
def test_property_components_cpu_and_cuda(h, w, p, seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((2, h, w)) < p
    masks[1, 0, 0] = False  # at least one normal pixel
    maps = rng.permutation(masks.size).reshape(masks.shape).astype(np.float32)
    sizes, n_regions = _region_sizes(masks)
    b = _same_tables(_builds(maps, masks, join_runs=False))
    assert b.n_regions == n_regions
    order = np.argsort(maps[masks], kind="stable")
    assert _wsum_ints(_arrays(b)) == [(1 << 96) // int(s) for s in sizes[masks][order]]
