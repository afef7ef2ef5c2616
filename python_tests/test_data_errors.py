"""Bad input: every case gives a DatasetError naming the file and the problem.

Also: the checker reports each problem with its path and fails, and ``on_error="skip"`` leaves
bad samples out only when asked, and says so.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from mentor3ad_ext.cli import main
from mentor3ad_ext.data import (DatasetError, MVTec3DDataset, check_dataset, list_mvtec3d_samples,
                                load_raw, read_gt, read_rgb, read_xyz, write_gt, write_rgb,
                                write_xyz)

H = W = 12


def _cloud(h=H, w=W):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xyz = np.stack([xx * 1e-3, yy * 1e-3, np.full_like(xx, 0.4)], axis=-1)
    xyz[h // 3: 2 * h // 3, w // 3: 2 * w // 3, 2] -= 0.01  # an object on the plane
    return xyz


def _write_sample(folder: Path, stem: str, gt: np.ndarray | None = None):
    write_rgb(folder / "rgb" / f"{stem}.png", np.full((H, W, 3), 128, np.uint8))
    write_xyz(folder / "xyz" / f"{stem}.tiff", _cloud())
    if gt is not None:
        write_gt(folder / "gt" / f"{stem}.png", gt)


@pytest.fixture()
def root(tmp_path):
    """A valid dataset: class "widget" with train/good, test/good and test/crack."""
    base = tmp_path / "ds" / "widget"
    _write_sample(base / "train" / "good", "000")
    _write_sample(base / "train" / "good", "001")
    _write_sample(base / "test" / "good", "000", np.zeros((H, W), bool))
    crack = np.zeros((H, W), bool)
    crack[5, 3:9] = True
    _write_sample(base / "test" / "crack", "000", crack)
    (base / "calibration").mkdir()
    (base / "calibration" / "camera_parameters.json").write_text('{"fx": 1}')
    return tmp_path / "ds"


def _load_all(root, split):
    for rec in list_mvtec3d_samples(root, "widget", split):
        load_raw(rec)


def _raises(path, pattern, fn, *args, **kwargs):
    with pytest.raises(DatasetError) as info:
        fn(*args, **kwargs)
    assert Path(info.value.path) == Path(path)
    assert str(path) in str(info.value)
    assert re.search(pattern, str(info.value)), str(info.value)
    return info.value


def test_valid_fixture_loads(root):
    _load_all(root, ("train", "test"))
    assert check_dataset(root).ok


# ----------------------------------------------------------------------------- missing things

def test_missing_root(tmp_path):
    _raises(tmp_path / "nope", "dataset folder not found", list_mvtec3d_samples, tmp_path / "nope")


def test_missing_class(root):
    _raises(root / "gizmo", "class folder not found.*widget", list_mvtec3d_samples, root, "gizmo")


def test_missing_split(root):
    shutil.rmtree(root / "widget" / "train")
    _raises(root / "widget" / "train", "split folder not found", list_mvtec3d_samples, root,
            "widget", "train")


def test_missing_modality_folder(root):
    shutil.rmtree(root / "widget" / "test" / "crack" / "xyz")
    _raises(root / "widget" / "test" / "crack" / "xyz", "folder not found", list_mvtec3d_samples,
            root, "widget", "test")


def test_missing_gt_folder_of_a_defect(root):
    shutil.rmtree(root / "widget" / "test" / "crack" / "gt")
    _raises(root / "widget" / "test" / "crack" / "gt", "folder not found", list_mvtec3d_samples,
            root, "widget", "test")


@pytest.mark.parametrize("which", ["rgb/000.png", "xyz/000.tiff", "gt/000.png"])
def test_missing_file_of_a_sample(root, which):
    target = root / "widget" / "test" / "crack" / which
    target.unlink()
    _raises(target, "file not found", list_mvtec3d_samples, root, "widget", "test")


def test_defect_folder_in_train(root):
    _write_sample(root / "widget" / "train" / "crack", "000")
    _raises(root / "widget" / "train" / "crack", "only hold normal samples",
            list_mvtec3d_samples, root, "widget", "train")


# ----------------------------------------------------------------------------- corrupt files

def test_corrupt_png(root):
    path = root / "widget" / "train" / "good" / "rgb" / "000.png"
    path.write_bytes(path.read_bytes()[:60])  # truncated
    _raises(path, "cannot decode RGB image", read_rgb, path)
    ds = MVTec3DDataset(root, "widget", "train", cache=False)
    _raises(path, "cannot decode", ds.__getitem__, 0)


def test_not_a_png(root):
    path = root / "widget" / "train" / "good" / "rgb" / "000.png"
    path.write_text("hello")
    _raises(path, "cannot decode RGB image", read_rgb, path)


def test_corrupt_tiff(root):
    path = root / "widget" / "train" / "good" / "xyz" / "000.tiff"
    path.write_bytes(b"II*\x00garbage")
    _raises(path, "cannot read TIFF", read_xyz, path)


def test_corrupt_gt(root):
    path = root / "widget" / "test" / "crack" / "gt" / "000.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    _raises(path, "cannot decode mask image", read_gt, path)


# ----------------------------------------------------------------------------- wrong contents

@pytest.mark.parametrize("mode,channels", [("L", "1 channel"), ("RGBA", "4 channels"),
                                           ("LA", "2 channels")])
def test_rgb_wrong_channel_count(root, mode, channels):
    path = root / "widget" / "train" / "good" / "rgb" / "000.png"
    Image.new(mode, (W, H)).save(path)
    _raises(path, f"expected an 8-bit RGB image.*{channels}", read_rgb, path)


@pytest.mark.parametrize("array,pattern", [
    (np.zeros((H, W), np.float32), r"shape \(H, W, 3\), got shape \(12, 12\)"),
    (np.zeros((H, W, 4), np.float32), r"got shape \(12, 12, 4\)"),
    (np.ones((H, W, 3), np.uint16), "float coordinates.*uint16"),
])
def test_xyz_wrong_shape_or_dtype(root, array, pattern):
    path = root / "widget" / "train" / "good" / "xyz" / "000.tiff"
    tifffile.imwrite(path, array, photometric="minisblack")
    _raises(path, pattern, read_xyz, path)


def test_xyz_nan_become_holes(root):
    path = root / "widget" / "train" / "good" / "xyz" / "000.tiff"
    xyz = _cloud()
    xyz[0, 0] = np.nan
    xyz[0, 1, 2] = np.inf
    tifffile.imwrite(path, xyz, photometric="minisblack")
    got = read_xyz(path)
    assert (got[0, :2] == 0).all() and np.isfinite(got).all()


def test_gt_wrong_channels(root):
    path = root / "widget" / "test" / "crack" / "gt" / "000.png"
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(path)
    _raises(path, "single-channel mask.*channels differ", read_gt, path)
    Image.new("RGBA", (W, H)).save(path)
    _raises(path, "single-channel mask.*RGBA", read_gt, path)


def test_gt_three_equal_channels_accepted(root):
    path = root / "widget" / "test" / "crack" / "gt" / "000.png"
    mask = np.zeros((H, W, 3), np.uint8)
    mask[2:4, 2:4] = 255
    Image.fromarray(mask).save(path)
    assert read_gt(path).sum() == 4


def test_gt_not_binary(root):
    path = root / "widget" / "test" / "crack" / "gt" / "000.png"
    mask = np.zeros((H, W), np.uint8)
    mask[2:4, 2:4] = 1  # a 0/1 mask: would silently read as all normal
    Image.fromarray(mask).save(path)
    _raises(path, r"not binary: 4 pixel\(s\) have values in 1..127 \(1\)", read_gt, path)
    assert not read_gt(path, strict=False).any()
    mask[2:4, 2:4] = 200  # per-class ids > 127 are fine
    Image.fromarray(mask).save(path)
    assert read_gt(path).sum() == 4


@pytest.mark.parametrize("which,size", [("xyz/000.tiff", (H, W + 2)), ("gt/000.png", (H + 1, W))])
def test_size_mismatch(root, which, size):
    folder = root / "widget" / "test" / "crack"
    path = folder / which
    if which.startswith("xyz"):
        write_xyz(path, _cloud(*size))
    else:
        write_gt(path, np.zeros(size, bool))
    _raises(path, r"size mismatch.*12x12 \(HxW\)", _load_all, root, "test")


def test_empty_cloud(root):
    path = root / "widget" / "train" / "good" / "xyz" / "001.tiff"
    write_xyz(path, np.zeros((H, W, 3), np.float32))
    _raises(path, "point cloud is empty", _load_all, root, "train")


def test_good_sample_with_anomalous_mask(root):
    path = root / "widget" / "test" / "good" / "gt" / "000.png"
    mask = np.zeros((H, W), bool)
    mask[0, 0] = True
    write_gt(path, mask)
    _raises(path, r"'good' sample marks 1 anomalous pixel", _load_all, root, "test")


# ----------------------------------------------------------------------------- skip and check

def test_skip_only_on_request_and_reported(root):
    bad = root / "widget" / "test" / "crack" / "rgb" / "000.png"
    bad.write_bytes(b"broken")
    strict = MVTec3DDataset(root, "widget", "test", cache=False)
    assert len(strict) == 2  # listing is by name; the error comes when the sample is read
    with pytest.raises(DatasetError, match="cannot decode"):
        strict[1]
    with pytest.warns(RuntimeWarning, match=r"(?s)left out 1 problem.*crack/rgb/000.png"):
        lenient = MVTec3DDataset(root, "widget", "test", cache=False, on_error="skip")
    assert len(lenient) == 1 and lenient.skipped[0][0] == str(bad)
    # missing files are skipped (and reported) too
    (root / "widget" / "test" / "good" / "xyz" / "000.tiff").unlink()
    with pytest.warns(RuntimeWarning, match="left out 2 problem"):
        lenient = MVTec3DDataset(root, "widget", "test", cache=False, on_error="skip")
    assert len(lenient) == 0
    with pytest.raises(ValueError, match="on_error"):
        MVTec3DDataset(root, "widget", "test", on_error="ignore")


def test_check_reports_every_problem_with_its_path(root, capsys):
    problems = {
        root / "widget" / "train" / "good" / "rgb" / "000.png": "cannot decode",
        root / "widget" / "train" / "good" / "xyz" / "001.tiff": "point cloud is empty",
        root / "widget" / "test" / "crack" / "gt" / "000.png": "size mismatch",
        root / "widget" / "test" / "good" / "xyz" / "000.tiff": "file not found",
    }
    paths = list(problems)
    paths[0].write_bytes(b"broken")
    write_xyz(paths[1], np.zeros((H, W, 3), np.float32))
    write_gt(paths[2], np.ones((H + 1, W), bool))
    paths[3].unlink()
    report = check_dataset(root)
    assert not report.ok
    assert {Path(e.path) for e in report.problems} == set(problems)
    for err in report.problems:
        assert problems[Path(err.path)] in err.problem
    assert report.counts["widget"]["train/good"] == 2
    assert report.counts["widget"]["test/crack"] == 1
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    for path in problems:
        assert f"problem: {path}" in out
    assert "FAILED" in out


def test_check_warnings_do_not_fail(root, capsys):
    write_gt(root / "widget" / "test" / "crack" / "gt" / "000.png", np.zeros((H, W), bool))
    (root / "widget" / "calibration" / "camera_parameters.json").unlink()
    report = check_dataset(root)
    assert report.ok and len(report.warnings) == 2
    assert "empty mask" in report.format() and "12x12 x4" in report.format()


def test_check_missing_things(tmp_path, root):
    assert not check_dataset(tmp_path / "nope").ok
    shutil.rmtree(root / "widget" / "test")
    report = check_dataset(root)
    assert [Path(e.path) for e in report.problems] == [root / "widget" / "test"]
    (root / "widget" / "calibration" / "camera_parameters.json").write_text("{broken")
    report = check_dataset(root)
    assert any("cannot parse JSON" in e.problem for e in report.problems)
    assert not check_dataset(root, "gizmo").ok


def test_dataset_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(DatasetError("/a/b.png", "broken")))
    assert (err.path, err.problem, str(err)) == (Path("/a/b.png"), "broken", "/a/b.png: broken")
    # torch re-raises worker exceptions as ExcType(message): a single argument must work
    single = pickle.loads(pickle.dumps(DatasetError("/a/b.png: broken")))
    assert single.path is None and str(single) == "/a/b.png: broken"
    assert isinstance(single, ValueError)


def test_check_lenient_gt_flag(root, capsys):
    path = root / "widget" / "test" / "crack" / "gt" / "000.png"
    mask = np.zeros((H, W), np.uint8)
    mask[2:4, 2:4] = 1
    Image.fromarray(mask).save(path)
    assert main(["data", "check", str(root)]) == 1
    assert "not binary" in capsys.readouterr().out
    assert main(["data", "check", str(root), "--lenient-gt"]) == 0  # empty mask: a warning
    assert "warning:" in capsys.readouterr().out
