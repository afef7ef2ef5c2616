"""Preprocessing on known geometry: plane removal, resizing, pixel indices, normalisation."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from mentor3ad_ext.data import (IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig, fit_plane_ransac,
                                preprocess_arrays, remove_background_plane, resize_nearest,
                                to_sample, valid_mask)


def plane_scene(size=120, f=400.0, distance=0.4, tilt=(0.05, -0.03), box=None, height=0.01,
                noise=0.0, seed=0):
    """An organized cloud: a (tilted) plane seen by a pinhole camera, with a box on it.

    ``box`` = (row0, row1, col0, col1) in pixels: the object, ``height`` metres above the plane.
    Returns (xyz, object_mask).
    """
    c = (size - 1) / 2
    grid = (np.arange(size) - c) / f
    xn, yn = np.meshgrid(grid, grid)
    z = distance / (1 - tilt[0] * xn - tilt[1] * yn)
    obj = np.zeros((size, size), dtype=bool)
    if box is not None:
        r0, r1, c0, c1 = box
        obj[r0:r1, c0:c1] = True
        z = z - height * obj
    z = z + np.random.default_rng(seed).normal(0, noise, z.shape)
    return np.stack([xn * z, yn * z, z], axis=-1).astype(np.float32), obj


def test_ransac_recovers_a_plane_despite_outliers():
    xyz, _ = plane_scene(size=60, tilt=(0.1, 0.2), noise=2e-4)
    pts = xyz.reshape(-1, 3).astype(np.float64)
    rng = np.random.default_rng(1)
    outliers = pts[rng.choice(len(pts), 900)] - [0, 0, 0.05]  # 20% of points off the plane
    plane = fit_plane_ransac(np.concatenate([pts, outliers]), threshold=0.002, seed=0)
    # the true plane Z = D + tx X + ty Y has normal ~ (tx, ty, -1), offset D, facing the camera
    true_n = np.array([0.1, 0.2, -1.0]) / np.linalg.norm([0.1, 0.2, -1.0])
    assert abs(plane.normal @ true_n) > 0.9999
    assert plane.offset > 0 and abs(plane.signed_distance(pts)).max() < 2e-3
    again = fit_plane_ransac(np.concatenate([pts, outliers]), threshold=0.002, seed=0)
    np.testing.assert_array_equal(plane.normal, again.normal)  # deterministic


def test_ransac_degenerate_inputs():
    assert fit_plane_ransac(np.zeros((2, 3)), threshold=0.01) is None
    line = np.stack([np.linspace(0, 1, 20), np.zeros(20), np.ones(20)], axis=1)
    assert fit_plane_ransac(line, threshold=0.01) is None


@pytest.mark.parametrize("tilt", [(0.0, 0.0), (0.06, -0.04)])
def test_plane_removed_object_kept(tilt):
    xyz, obj = plane_scene(size=100, tilt=tilt, box=(30, 70, 25, 80), height=0.012, noise=1e-4)
    xyz[obj & (np.arange(100)[None, :] % 17 == 0)] = 0  # a few holes in the object
    keep, plane = remove_background_plane(xyz, threshold=0.005)
    assert plane is not None
    np.testing.assert_array_equal(keep, obj & valid_mask(xyz))


def test_object_touching_the_border_and_speckle():
    xyz, obj = plane_scene(size=100, box=(0, 60, 20, 70), height=0.02)  # touches the top edge
    speckle = np.zeros_like(obj)
    speckle[90, 90] = speckle[5, 95] = True  # two isolated points well above the plane
    xyz[speckle, 2] -= 0.03
    keep, _ = remove_background_plane(xyz, threshold=0.005, min_cluster_fraction=0.05)
    np.testing.assert_array_equal(keep, obj)
    keep_all, _ = remove_background_plane(xyz, threshold=0.005, min_cluster_fraction=0)
    np.testing.assert_array_equal(keep_all, obj | speckle)


def test_points_behind_the_plane_are_background():
    xyz, obj = plane_scene(size=80, box=(20, 60, 20, 60), height=0.01)
    xyz[5:8, 40:43, :] *= 1.1  # points 4 cm behind the table: outliers
    keep, _ = remove_background_plane(xyz, threshold=0.005)
    np.testing.assert_array_equal(keep, obj)


def test_plane_removal_is_vectorised_fast():
    xyz, obj = plane_scene(size=800, f=2600.0, box=(250, 550, 200, 600), height=0.015,
                           noise=1e-4)
    remove_background_plane(xyz)  # warm up
    start = time.perf_counter()
    keep, _ = remove_background_plane(xyz)
    elapsed = time.perf_counter() - start
    assert (keep == obj).mean() > 0.999
    assert elapsed < 1.0, f"plane removal of an 800x800 cloud took {elapsed:.2f}s"


def test_resize_nearest_keeps_holes_and_values():
    arr = np.arange(36, dtype=np.float32).reshape(6, 6)
    out = resize_nearest(arr, 3)
    np.testing.assert_array_equal(out, arr[1::2, 1::2])  # half-pixel centres
    xyz = np.zeros((10, 10, 3), np.float32)
    xyz[2:5, 3:7] = [0.1, 0.2, 0.4]
    small = resize_nearest(xyz, 4)
    values = {tuple(v) for v in small.reshape(-1, 3)}
    assert values <= {(0.0, 0.0, 0.0), tuple(np.float32([0.1, 0.2, 0.4]))}  # nothing invented


def test_preprocess_arrays_points_and_pixel_index():
    xyz, obj = plane_scene(size=90, box=(20, 70, 30, 60), height=0.01)
    rgb = np.random.default_rng(0).integers(0, 256, (90, 90, 3), dtype=np.uint8)
    gt = np.zeros((90, 90), bool)
    gt[40:50, 40:50] = True
    cfg = PreprocessConfig(image_size=30)
    pre = preprocess_arrays(rgb, xyz, gt, cfg)
    assert pre.rgb.shape == (30, 30, 3) and pre.rgb.dtype == np.uint8
    assert pre.points.dtype == np.float32 and pre.pixel_index.dtype == np.int64
    expected_keep = resize_nearest(obj, 30)
    np.testing.assert_array_equal(np.flatnonzero(expected_keep), pre.pixel_index)
    np.testing.assert_array_equal(pre.points, resize_nearest(xyz, 30)[expected_keep])
    np.testing.assert_array_equal(pre.gt, resize_nearest(gt, 30))

    sample = to_sample(pre, cfg)
    assert sample["rgb"].shape == (3, 30, 30) and sample["rgb"].dtype == torch.float32
    assert sample["xyz"].shape == (3, 30, 30)
    assert sample["valid"].dtype == torch.bool
    np.testing.assert_array_equal(sample["valid"].numpy(), expected_keep)
    flat = sample["xyz"].permute(1, 2, 0).reshape(-1, 3)
    assert torch.equal(flat[sample["pixel_index"]], sample["points"])
    assert (flat[~sample["valid"].reshape(-1)] == 0).all()
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    raw = torch.from_numpy(pre.rgb).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(sample["rgb"], (raw - mean) / std)
    plain = to_sample(pre, PreprocessConfig(image_size=30, mean=None, std=None))
    torch.testing.assert_close(plain["rgb"], raw)


def test_no_plane_removal_keeps_every_point():
    xyz, _ = plane_scene(size=40, box=(10, 30, 10, 30))
    xyz[0, 0] = 0
    pre = preprocess_arrays(np.zeros((40, 40, 3), np.uint8), xyz, np.zeros((40, 40), bool),
                            PreprocessConfig(image_size=40, remove_plane=False))
    assert len(pre.points) == 40 * 40 - 1


def test_config_validation():
    with pytest.raises(ValueError, match="image_size"):
        PreprocessConfig(image_size=0)
    with pytest.raises(ValueError, match="both"):
        PreprocessConfig(mean=None)
    with pytest.raises(ValueError, match="plane_border"):
        PreprocessConfig(plane_border=0.9)
