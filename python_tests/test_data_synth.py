"""Synthetic generator: layout, determinism, and masks that line up with the planted defects."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from mentor3ad_ext.cli import main
from mentor3ad_ext.data import (DEFECT_TYPES, DatasetError, MVTec3DDataset, SynthConfig,
                                generate_synthetic_dataset, list_mvtec3d_samples, load_raw,
                                read_camera_parameters, read_gt, read_rgb, read_xyz,
                                render_sample, sample_spec, valid_mask)
from mentor3ad_ext.data.synth import MASK_FRACTION, SYNTH_CLASSES

TINY = SynthConfig(classes=("cookie", "dowel"), n_train=2, n_val=1, n_test=1, size=48)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_synthetic_dataset(root, TINY)
    return root


def test_layout_and_round_trip(tiny_root):
    for cls in TINY.classes:
        for split, n in (("train", 2), ("validation", 1)):
            recs = list_mvtec3d_samples(tiny_root, cls, split)
            assert [r.defect for r in recs] == ["good"] * n
            assert all(r.gt is None for r in recs)
        test = list_mvtec3d_samples(tiny_root, cls, "test")
        assert sorted({r.defect for r in test}) == sorted(("good",) + DEFECT_TYPES)
        assert all(r.gt is not None for r in test)
        calib = read_camera_parameters(tiny_root / cls / "calibration" / "camera_parameters.json")
        assert calib["image_width"] == calib["image_height"] == 48
        assert calib["fx"] == pytest.approx(TINY.focal_length)
    # what was written is what the renderer produced, bit for bit
    for rec in list_mvtec3d_samples(tiny_root, None, ("train", "test")):
        spec = sample_spec(TINY, rec.class_name, rec.split, rec.defect, int(rec.sample_id))
        rgb, xyz, gt = render_sample(spec, TINY)
        got_rgb, got_xyz = read_rgb(rec.rgb), read_xyz(rec.xyz)
        assert got_rgb.dtype == np.uint8 and got_rgb.shape == (48, 48, 3)
        assert got_xyz.dtype == np.float32 and got_xyz.shape == (48, 48, 3)
        np.testing.assert_array_equal(got_rgb, rgb)
        np.testing.assert_array_equal(got_xyz, xyz)
        if rec.gt is not None:
            np.testing.assert_array_equal(read_gt(rec.gt), gt)
            assert gt.any() == (rec.defect != "good")


def test_geometry_is_metric_and_plausible():
    cfg = SynthConfig(size=64)
    rgb, xyz, gt = render_sample(sample_spec(cfg, "cookie", "train", "good", 0), cfg)
    valid = valid_mask(xyz)
    assert valid.mean() > 0.9  # holes only at steep silhouettes
    z = xyz[..., 2][valid]
    assert 0.38 < z.min() and z.max() < 0.42  # camera about 0.4 m above the plane
    assert 0.010 < z.max() - z.min() < 0.025  # a cookie about 12 mm tall (+ plane tilt)


@pytest.mark.parametrize("cls", SYNTH_CLASSES)
@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_masks_line_up_with_planted_defects(cls, defect):
    cfg = SynthConfig(size=64)
    spec = sample_spec(cfg, cls, "test", defect, 0)
    rgb, xyz, gt = render_sample(spec, cfg)
    rgb0, xyz0, gt0 = render_sample(replace(spec, defects=()), cfg)  # the defect-free twin
    shapes = tuple(d for d in spec.defects if d.kind != "stain")
    stains = tuple(d for d in spec.defects if d.kind == "stain")
    gt_shape = render_sample(replace(spec, defects=shapes), cfg)[2]
    gt_stain = render_sample(replace(spec, defects=stains), cfg)[2]
    assert not gt0.any() and gt.sum() >= 8
    np.testing.assert_array_equal(gt, gt_shape | gt_stain)
    assert bool(shapes) == (defect in ("dent", "bump", "crack", "combined"))
    assert bool(stains) == (defect in ("stain", "combined"))

    both = valid_mask(xyz) & valid_mask(xyz0)
    dz = np.abs(xyz[..., 2] - xyz0[..., 2])
    if shapes:
        depth = max(abs(d.depth) for d in shapes) * spec.pose.scale
        tol = 1e-6  # float32 rounding of ~0.4 m coordinates
        # outside the mask the surface moved by less than MASK_FRACTION of the depth, inside by
        # at least that much, and somewhere by most of the depth
        assert dz[both & ~gt_shape].max() <= MASK_FRACTION * depth + tol
        assert dz[both & gt_shape].min() >= MASK_FRACTION * depth - tol
        assert dz[both & gt_shape].max() >= 0.6 * depth
    else:
        np.testing.assert_array_equal(xyz, xyz0)  # a stain is invisible in xyz
    drgb = np.abs(rgb.astype(int) - rgb0).max(axis=-1)
    if stains:
        assert (drgb[~gt_stain] == 0).all()
        assert (drgb[gt_stain] > 0).mean() > 0.9 and drgb[gt_stain].max() > 60
    else:
        np.testing.assert_array_equal(rgb, rgb0)  # a geometric defect is invisible in rgb


def test_defects_survive_preprocessing(tiny_root):
    ds = MVTec3DDataset(tiny_root, "cookie", "test", cache=False)
    for sample in ds:
        if sample["defect"] != "good":
            gt, valid = sample["gt"], sample["valid"]
            assert gt.sum() > 0
            assert (gt & valid).sum() >= 0.8 * gt.sum()  # plane removal keeps the defects


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path):
    cfg = SynthConfig(classes=("foam",), n_train=2, n_val=0, n_test=1, defects=("dent",),
                      size=32)
    generate_synthetic_dataset(tmp_path / "a", cfg)
    generate_synthetic_dataset(tmp_path / "b", cfg)
    generate_synthetic_dataset(tmp_path / "c", replace(cfg, seed=1))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    # more samples and more classes do not change existing ones
    generate_synthetic_dataset(tmp_path / "d", replace(cfg, classes=("cookie", "foam"),
                                                       n_train=3))
    for name in ("000.png", "001.png"):
        a = tmp_path / "a" / "foam" / "train" / "good" / "rgb" / name
        d = tmp_path / "d" / "foam" / "train" / "good" / "rgb" / name
        assert a.read_bytes() == d.read_bytes()


def test_overwrite_protection(tmp_path):
    cfg = SynthConfig(classes=("dowel",), n_train=1, n_val=0, n_test=0, size=32)
    generate_synthetic_dataset(tmp_path, cfg)
    with pytest.raises(DatasetError, match="not empty"):
        generate_synthetic_dataset(tmp_path, cfg)
    generate_synthetic_dataset(tmp_path, replace(cfg, n_train=2), overwrite=True)
    assert len(list((tmp_path / "dowel" / "train" / "good" / "rgb").iterdir())) == 2
    foreign = tmp_path / "cookie"
    (foreign / "mine").mkdir(parents=True)
    with pytest.raises(DatasetError, match="not written by the synthetic generator"):
        generate_synthetic_dataset(tmp_path, replace(cfg, classes=("cookie",)), overwrite=True)
    assert (foreign / "mine").is_dir()


def test_config_validation():
    with pytest.raises(ValueError, match="unknown synthetic class"):
        SynthConfig(classes=("bagel",))
    with pytest.raises(ValueError, match="unknown defect type"):
        SynthConfig(defects=("scratch",))
    with pytest.raises(ValueError, match="n_train"):
        SynthConfig(n_train=-1)


def test_cli_synth_then_check(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["data", "synth", "--out", str(out), "--classes", "potato", "--n-train", "1",
               "--n-val", "0", "--n-test", "1", "--defects", "stain", "crack", "--size", "32",
               "--seed", "3", "-q"])
    assert rc == 0
    assert "wrote 4 samples of 1 class(es)" in capsys.readouterr().out
    marker = json.loads((out / "potato" / ".mentor3ad_synth.json").read_text())
    assert marker["config"]["seed"] == 3 and marker["counts"]["test/crack"] == 1
    rec = list_mvtec3d_samples(out, "potato", "test")[0]
    assert load_raw(rec).rgb.shape == (32, 32, 3)
    assert main(["data", "check", str(out)]) == 0
    assert "OK" in capsys.readouterr().out
    # refusing to overwrite is an error message and a non-zero status, not a traceback
    assert main(["data", "synth", "--out", str(out), "--classes", "potato", "--size", "32",
                 "-q"]) == 1
    assert "not empty" in capsys.readouterr().err
