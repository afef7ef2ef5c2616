"""The preprocessing cache: hits, misses, invalidation, corruption, concurrency safety."""
from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
import torch

from mentor3ad_ext.data import (MVTec3DDataset, PreprocessCache, PreprocessConfig, SynthConfig,
                                default_cache_dir, generate_synthetic_dataset)

CFG = PreprocessConfig(image_size=32)


@pytest.fixture()
def root(tmp_path):
    generate_synthetic_dataset(tmp_path / "ds", SynthConfig(classes=("cookie",), n_train=2,
                                                            n_val=0, n_test=0, size=40))
    return tmp_path / "ds"


def _dataset(root, cache_dir, config=CFG):
    return MVTec3DDataset(root, "cookie", "train", preprocess=config, cache_dir=cache_dir)


def _same(a, b):
    for key in ("rgb", "xyz", "valid", "points", "pixel_index", "gt"):
        assert torch.equal(a[key], b[key]), key


def test_hit_after_miss_and_identical_samples(root, tmp_path):
    cache = tmp_path / "cache"
    ds = _dataset(root, cache)
    first = [ds[i] for i in range(len(ds))]
    assert (ds.cache_stats.hits, ds.cache_stats.misses) == (0, 2)
    second = [ds[i] for i in range(len(ds))]
    assert (ds.cache_stats.hits, ds.cache_stats.misses) == (2, 2)
    for a, b in zip(first, second):
        _same(a, b)
    uncached = MVTec3DDataset(root, "cookie", "train", preprocess=CFG, cache=False)
    _same(first[0], uncached[0])
    assert len(list(cache.glob("*.npz"))) == 2
    assert not list(cache.glob(".*"))  # no temporaries left behind
    # a new dataset object (e.g. the next run) reads the same files
    again = _dataset(root, cache)
    _same(again[1], first[1])
    assert again.cache_stats.hits == 1 and again.cache_stats.misses == 0


def test_invalidated_when_a_file_changes(root, tmp_path):
    ds = _dataset(root, tmp_path / "cache")
    ds[0]
    xyz_file = ds.records[0].xyz
    st = xyz_file.stat()
    os.utime(xyz_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched
    ds[0]
    assert ds.cache_stats.misses == 2
    ds[0]
    assert ds.cache_stats.hits == 1
    # replaced by another sample's file (different content): a miss and the new content
    shutil.copyfile(ds.records[1].rgb, ds.records[0].rgb)
    fresh = ds[0]
    assert ds.cache_stats.misses == 3
    assert torch.equal(fresh["rgb"], ds[1]["rgb"])


def test_invalidated_when_parameters_change(root, tmp_path):
    cache = tmp_path / "cache"
    _dataset(root, cache)[0]
    for config in (PreprocessConfig(image_size=24), PreprocessConfig(image_size=32,
                                                                     plane_threshold=0.004),
                   PreprocessConfig(image_size=32, remove_plane=False)):
        ds = _dataset(root, cache, config)
        sample = ds[0]
        assert ds.cache_stats.misses == 1, config
        assert sample["rgb"].shape[-1] == config.image_size
    # normalisation is applied after the cache: changing it reuses the entry
    ds = _dataset(root, cache, PreprocessConfig(image_size=32, mean=None, std=None))
    assert ds[0]["rgb"].min() >= 0
    assert ds.cache_stats.hits == 1


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "wrong_key"])
def test_corrupt_cache_file_is_rebuilt(root, tmp_path, damage):
    cache = tmp_path / "cache"
    ds = _dataset(root, cache)
    reference = ds[0]
    (path,) = [p for p in cache.glob("*.npz")]
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a valid file for another key, copied under this name
        other = PreprocessCache(tmp_path / "other")
        other.save("0" * 64, PreprocessCache(cache).load(path.stem))
        shutil.copyfile(other.path("0" * 64), path)
    ds2 = _dataset(root, cache)
    rebuilt = ds2[0]
    assert ds2.cache_stats.corrupt == 1 and ds2.cache_stats.misses == 1
    _same(rebuilt, reference)
    ds3 = _dataset(root, cache)
    ds3[0]
    assert ds3.cache_stats.hits == 1  # the rebuilt entry is good


def test_unwritable_cache_warns_once_and_still_works(root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    ds = _dataset(root, blocker / "cache")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds[0]
        ds[1]
    assert len([w for w in caught if "cannot write the preprocessing cache" in str(w.message)]) \
        == 1
    assert ds[0]["points"].shape[1] == 3


def test_cache_disabled(root):
    ds = MVTec3DDataset(root, "cookie", "train", preprocess=CFG, cache=False)
    ds[0]
    ds[0]
    assert ds.cache is None and ds.cache_stats.hits == 0


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MENTOR3AD_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MENTOR3AD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mentor3ad_ext" / "preprocess"


def test_key_depends_on_files_and_params(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1")
    b.write_bytes(b"1")
    cache = PreprocessCache(tmp_path)
    assert cache.key([a], {"p": 1}) == cache.key([a], {"p": 1})
    assert cache.key([a], {"p": 1}) != cache.key([b], {"p": 1})
    assert cache.key([a], {"p": 1}) != cache.key([a], {"p": 2})
    assert cache.key([a, b], {}) != cache.key([b, a], {})
    before = cache.key([a], {"p": 1})
    a.write_bytes(b"12")  # new size (and usually new mtime)
    assert cache.key([a], {"p": 1}) != before
    np.testing.assert_equal(len(before), 64)
