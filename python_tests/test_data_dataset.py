"""Torch datasets and the collate: sample contents, ragged batches, multi-worker loading."""
from __future__ import annotations

import pytest
import torch

from mentor3ad_ext.data import (AnomalyDetectionDataset, DatasetError, MVTec3DDataset,
                                PreprocessConfig, SynthConfig, collate_samples,
                                generate_synthetic_dataset, list_mvtec3d_samples, make_loader,
                                pad_points)

CFG = PreprocessConfig(image_size=32)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    generate_synthetic_dataset(root, SynthConfig(classes=("cookie", "foam"), n_train=3, n_val=1,
                                                 n_test=1, defects=("dent", "stain"), size=40))
    return root


def test_sample_contents(root, tmp_path):
    ds = MVTec3DDataset(root, "cookie", "test", preprocess=CFG, cache_dir=tmp_path)
    assert len(ds) == 3 and ds.labels == [0, 1, 1]
    sample = ds[1]
    expected = {"rgb": ((3, 32, 32), torch.float32), "xyz": ((3, 32, 32), torch.float32),
                "valid": ((32, 32), torch.bool), "gt": ((32, 32), torch.bool),
                "label": ((), torch.int64), "pixel_index": (None, torch.int64),
                "points": (None, torch.float32)}
    for key, (shape, dtype) in expected.items():
        assert sample[key].dtype == dtype, key
        if shape is not None:
            assert tuple(sample[key].shape) == shape, key
    n = int(sample["valid"].sum())
    assert sample["points"].shape == (n, 3) and sample["pixel_index"].shape == (n,)
    assert (sample["class_name"], sample["split"], sample["defect"], sample["sample_id"]) == \
        ("cookie", "test", "dent", "000")
    assert sample["path"].endswith("cookie/test/dent/rgb/000.png") and sample["index"] == 1
    assert ds[-1]["defect"] == "stain"
    with pytest.raises(IndexError):
        ds[3]


def test_several_classes_and_splits(root):
    both = MVTec3DDataset(root, None, "train", preprocess=CFG, cache=False)
    assert [r.class_name for r in both.records] == ["cookie"] * 3 + ["foam"] * 3
    assert len(MVTec3DDataset(root, ["foam"], "validation", cache=False)) == 1
    with pytest.raises(ValueError, match="split must be one of"):
        MVTec3DDataset(root, "foam", "val")
    with pytest.raises(DatasetError, match="class folder not found"):
        MVTec3DDataset(root, "bagel")


def test_pad_points():
    clouds = [torch.ones(3, 3), torch.empty(0, 3), 2 * torch.ones(5, 3)]
    padded, lengths = pad_points(clouds)
    assert padded.shape == (3, 5, 3) and lengths.tolist() == [3, 0, 5]
    assert lengths.dtype == torch.int64
    assert (padded[0, :3] == 1).all() and (padded[0, 3:] == 0).all() and (padded[1] == 0).all()
    empty, lengths = pad_points([torch.empty(0, 3)])
    assert empty.shape == (1, 0, 3) and lengths.tolist() == [0]


def test_collate(root):
    ds = MVTec3DDataset(root, "foam", "test", preprocess=CFG, cache=False)
    batch = collate_samples([ds[0], ds[1], ds[2]])
    lengths = batch["lengths"]
    assert batch["points"].shape == (3, int(lengths.max()), 3)
    assert batch["pixel_index"].shape == batch["points"].shape[:2]
    for b in range(3):
        n = int(lengths[b])
        assert torch.equal(batch["points"][b, :n], ds[b]["points"])
        assert (batch["pixel_index"][b, n:] == -1).all() and (batch["points"][b, n:] == 0).all()
    assert batch["rgb"].shape == (3, 3, 32, 32) and batch["gt"].dtype == torch.bool
    assert batch["label"].tolist() == [0, 1, 1] and batch["index"].tolist() == [0, 1, 2]
    assert batch["defect"] == ["good", "dent", "stain"]
    with pytest.raises(ValueError, match="empty batch"):
        collate_samples([])


def test_multi_worker_loader_with_cache(root, tmp_path):
    ds = MVTec3DDataset(root, "cookie", "train", preprocess=CFG, cache_dir=tmp_path)
    loader = make_loader(ds, batch_size=2, num_workers=2)
    epochs = [[batch for batch in loader] for _ in range(2)]
    assert [len(b["label"]) for b in epochs[0]] == [2, 1]
    for a, b in zip(*epochs):
        assert torch.equal(a["points"], b["points"]) and torch.equal(a["rgb"], b["rgb"])
    assert len(list(tmp_path.glob("*.npz"))) == 3  # written by the workers, once per sample
    single = collate_samples([ds[0], ds[1]])
    assert torch.equal(epochs[0][0]["points"], single["points"])


def test_worker_errors_name_the_file(tmp_path):
    generate_synthetic_dataset(tmp_path / "ds", SynthConfig(classes=("dowel",), n_train=2,
                                                            n_val=0, n_test=0, size=32))
    bad = tmp_path / "ds" / "dowel" / "train" / "good" / "xyz" / "001.tiff"
    bad.write_bytes(b"II*\x00")
    ds = AnomalyDetectionDataset(list_mvtec3d_samples(tmp_path / "ds", "dowel", "train"),
                                 preprocess=CFG, cache=False)
    with pytest.raises(DatasetError, match="001.tiff: cannot read TIFF"):
        list(make_loader(ds, batch_size=1, num_workers=1))
