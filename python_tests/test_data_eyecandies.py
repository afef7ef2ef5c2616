"""Eyecandies: depth conversion, the original layout, the converted layout, info_depth.yaml."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mentor3ad_ext.data import (EYECANDIES_FOCAL_LENGTH, DatasetError, EyecandiesDataset,
                                MVTec3DDataset, PreprocessConfig, check_dataset,
                                convert_eyecandies, depth_to_organized_xyz,
                                list_eyecandies_samples, parse_simple_yaml, read_eyecandies_depth,
                                read_gt, read_info_depth, read_xyz)

S = 24  # the real images are 512 x 512
LO, HI = 0.30, 0.50


def _depth_png(seed):
    """A 16-bit depth map: a plane at ~0.45 m with a raised square (closer to the camera)."""
    depth = np.full((S, S), 0.45) + np.random.default_rng(seed).normal(0, 1e-4, (S, S))
    depth[8:16, 8:16] -= 0.02
    return np.round((depth - LO) / (HI - LO) * 65535).astype(np.uint16)


def _write_sample(data_dir, idx, seed, mask=None):
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for light in (0, 4):
        Image.fromarray(rng.integers(0, 256, (S, S, 3), dtype=np.uint8)).save(
            data_dir / f"{idx}_image_{light}.png")
    Image.fromarray(_depth_png(seed)).save(data_dir / f"{idx}_depth.png")
    (data_dir / f"{idx}_info_depth.yaml").write_text(
        f"# depth normalisation\nnormalization:\n  max: {HI}\n  min: {LO}\n")
    (data_dir / f"{idx}_pose.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    if mask is not None:
        Image.fromarray(mask.astype(np.uint8) * 255).save(data_dir / f"{idx}_mask.png")


@pytest.fixture()
def original(tmp_path):
    root = tmp_path / "eyecandies"
    cls = root / "Lollipop"
    for i in range(2):
        _write_sample(cls / "train" / "data", f"{i:03d}", i)
    _write_sample(cls / "val" / "data", "000", 10)
    bad = np.zeros((S, S), bool)
    bad[10:13, 10:14] = True
    _write_sample(cls / "test_public" / "data", "00", 20, np.zeros((S, S), bool))
    _write_sample(cls / "test_public" / "data", "01", 21, bad)
    return root


def test_depth_conversion_matches_pinhole_model(original):
    data = original / "Lollipop" / "train" / "data"
    depth = read_eyecandies_depth(data / "000_depth.png", data / "000_info_depth.yaml")
    expected = _depth_png(0).astype(np.float32) / 65535 * (HI - LO) + LO
    np.testing.assert_allclose(depth, expected, rtol=1e-6)
    xyz = depth_to_organized_xyz(depth)
    v, u = 5, 17
    z = depth[v, u]
    f = EYECANDIES_FOCAL_LENGTH
    np.testing.assert_allclose(xyz[v, u], [(u - S / 2) * z / f, (v - S / 2) * z / f, z],
                               rtol=1e-6)
    assert xyz.dtype == np.float32
    holes = depth_to_organized_xyz(np.where(np.arange(S)[None, :] < 3, 0.0, depth))
    assert (holes[:, :3] == 0).all() and (holes[:, 3:, 2] > 0).all()


def test_listing_labels_and_splits(original):
    train = list_eyecandies_samples(original, "Lollipop", "train")
    assert [r.sample_id for r in train] == ["000", "001"]
    assert all(r.fmt == "eyecandies" and r.rgb.name.endswith("_image_4.png") for r in train)
    test = list_eyecandies_samples(original, None, "test_public")
    assert [(r.sample_id, r.defect) for r in test] == [("00", "good"), ("01", "bad")]
    assert {r.split for r in test} == {"test"}
    assert len(list_eyecandies_samples(original, "Lollipop", "val")) == 1
    with pytest.raises(ValueError, match="split must be one of"):
        list_eyecandies_samples(original, "Lollipop", "test_private")


def test_dataset_on_original_release(original, tmp_path):
    cfg = PreprocessConfig(image_size=16, plane_threshold=0.005)
    ds = EyecandiesDataset(original, "Lollipop", "test", preprocess=cfg, cache_dir=tmp_path / "c")
    assert ds.labels == [0, 1]
    sample = ds[1]
    assert sample["rgb"].shape == (3, 16, 16) and sample["gt"].any()
    # the plane is gone, the raised square (8 px of 24 -> ~5 px of 16) is kept
    assert 16 <= int(sample["valid"].sum()) <= 36
    z = sample["points"][:, 2]
    assert torch.allclose(z, torch.full_like(z, 0.43), atol=1e-3)


def test_missing_and_bad_files(original):
    data = original / "Lollipop" / "test_public" / "data"
    (data / "01_mask.png").unlink()
    with pytest.raises(DatasetError, match="01_mask.png: file not found"):
        list_eyecandies_samples(original, "Lollipop", "test")
    (data / "00_info_depth.yaml").write_text("normalization:\n  min: 0.3\n")
    rec = list_eyecandies_samples(original, "Lollipop", "test", problems=[])[0]
    from mentor3ad_ext.data import load_raw

    with pytest.raises(DatasetError, match=r"00_info_depth.yaml: normalization.max must be a "
                                           r"finite number"):
        load_raw(rec)
    Image.new("L", (S, S)).save(data / "00_depth.png")
    with pytest.raises(DatasetError, match=r"00_depth.png: expected a 16-bit"):
        read_eyecandies_depth(data / "00_depth.png", data / "00_info_depth.yaml")


def test_convert_then_read_as_mvtec(original, tmp_path):
    out = tmp_path / "converted"
    counts = convert_eyecandies(original, out)
    assert counts == {"Lollipop": 5}
    cls = out / "Lollipop"
    assert sorted(p.name for p in (cls / "test").iterdir()) == ["bad", "good"]
    assert (cls / "calibration" / "camera_parameters.json").is_file()
    src = original / "Lollipop" / "test_public" / "data"
    assert (cls / "test" / "bad" / "rgb" / "001.png").read_bytes() == \
        (src / "01_image_4.png").read_bytes()
    expected = depth_to_organized_xyz(read_eyecandies_depth(src / "01_depth.png",
                                                            src / "01_info_depth.yaml"))
    np.testing.assert_array_equal(read_xyz(cls / "test" / "bad" / "xyz" / "001.tiff"), expected)
    np.testing.assert_array_equal(read_gt(cls / "test" / "bad" / "gt" / "001.png"),
                                  read_gt(src / "01_mask.png"))
    # the converted folder reads the same through both dataset classes
    cfg = PreprocessConfig(image_size=16)
    a = EyecandiesDataset(original, "Lollipop", "test", preprocess=cfg, cache=False)
    b = EyecandiesDataset(out, "Lollipop", "test", preprocess=cfg, cache=False)
    c = MVTec3DDataset(out, "Lollipop", "test", preprocess=cfg, cache=False)
    for i in range(2):
        for key in ("rgb", "points", "pixel_index", "gt"):
            assert torch.equal(a[i][key], b[i][key]) and torch.equal(b[i][key], c[i][key])
    assert check_dataset(out).ok


def test_check_original_layout(original):
    report = check_dataset(original)
    assert report.ok and report.layouts == {"Lollipop": "eyecandies"}
    assert report.counts["Lollipop"]["test/bad"] == 1
    (original / "Lollipop" / "val" / "data" / "000_depth.png").write_bytes(b"junk")
    report = check_dataset(original)
    assert [e.path.name for e in report.problems] == ["000_depth.png"]


@pytest.mark.parametrize("text,expected", [
    ("normalization:\n  max: 0.5\n  min: 0.25\n", {"normalization": {"max": 0.5, "min": 0.25}}),
    ("normalization: {min: 1, max: 2.5e-1}\n", {"normalization": {"min": 1, "max": 0.25}}),
    ("# c\nname: 'a b'  # trailing\nnormalization:\n    min: 0.1\n    max: 0.2\nother:\n  - 1\n"
     "  - 2\nlast: true\n",
     {"name": "a b", "normalization": {"min": 0.1, "max": 0.2}, "other": {}, "last": True}),
    ("a:\n  b:\n    c: 1\n  d: x\ne: 2\n", {"a": {"b": {"c": 1}, "d": "x"}, "e": 2}),
])
def test_parse_simple_yaml(text, expected):
    assert parse_simple_yaml(text) == expected


@pytest.mark.parametrize("text,pattern", [
    ("norm:\n  min: 0.1\n", "no 'normalization' mapping"),
    ("normalization:\n  min: low\n  max: 1\n", "normalization.min must be a finite number"),
    ("normalization:\n  min: 0.5\n  max: 0.1\n", r"normalization.max \(0.1\) < normalization.min"),
    ("just some text\n", "cannot parse depth info YAML"),
])
def test_bad_info_depth(tmp_path, text, pattern):
    path = tmp_path / "000_info_depth.yaml"
    path.write_text(text)
    with pytest.raises(DatasetError, match=pattern):
        read_info_depth(path)


def test_cli_convert(original, tmp_path, capsys):
    from mentor3ad_ext.cli import main

    assert main(["data", "convert-eyecandies", str(original), str(tmp_path / "out")]) == 0
    assert "wrote 5 samples" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "out")]) == 0
    (original / "Lollipop" / "train" / "data" / "001_image_4.png").write_bytes(b"x")
    assert main(["data", "convert-eyecandies", str(original), str(tmp_path / "out2")]) == 1
    assert "001_image_4.png: cannot decode" in capsys.readouterr().err


def test_original_layout_read_as_mvtec_gives_a_hint(original):
    with pytest.raises(DatasetError, match="original Eyecandies layout; read it with "
                                           "EyecandiesDataset"):
        MVTec3DDataset(original, "Lollipop", "train")
