"""Datasets: MVTec 3D-AD and Eyecandies readers, preprocessing, caching, synthetic data.

Quick start::

    from mentor3ad_ext.data import MVTec3DDataset, make_loader, generate_synthetic_dataset

    generate_synthetic_dataset("synthetic")                  # or a real MVTec 3D-AD folder
    train = MVTec3DDataset("synthetic", "cookie", "train")   # preprocessed, cached samples
    for batch in make_loader(train, batch_size=4, num_workers=2):
        batch["rgb"], batch["points"], batch["lengths"], batch["pixel_index"]

See docs/data.md for the layouts, the preprocessing choices and the cache.

Names are imported lazily (PEP 562) so that light users (the CLI's ``--help``, the dataset
checker) do not pay for importing torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "errors": ["DatasetError"],
    "io": ["read_rgb", "read_xyz", "read_gt", "write_rgb", "write_xyz", "write_gt",
           "valid_mask", "GT_THRESHOLD"],
    "records": ["SampleRecord", "RawSample", "load_raw"],
    "mvtec3d": ["MVTEC3D_CLASSES", "MVTEC3D_SPLITS", "list_mvtec3d_samples", "find_classes",
                "read_camera_parameters"],
    "eyecandies": ["EYECANDIES_CLASSES", "EYECANDIES_FOCAL_LENGTH", "list_eyecandies_samples",
                   "read_info_depth", "read_eyecandies_depth", "depth_to_organized_xyz",
                   "convert_eyecandies", "parse_simple_yaml"],
    "plane": ["Plane", "fit_plane_ransac", "remove_background_plane", "remove_small_clusters"],
    "preprocess": ["PreprocessConfig", "Preprocessed", "preprocess_arrays", "to_sample",
                   "resize_nearest", "resize_rgb", "IMAGENET_MEAN", "IMAGENET_STD"],
    "cache": ["PreprocessCache", "CacheStats", "default_cache_dir"],
    "dataset": ["AnomalyDetectionDataset", "MVTec3DDataset", "EyecandiesDataset",
                "collate_samples", "pad_points", "make_loader"],
    "synth": ["SynthConfig", "generate_synthetic_dataset", "render_sample", "sample_spec",
              "SYNTH_CLASSES", "DEFAULT_SYNTH_CLASSES", "DEFECT_TYPES", "GEOMETRIC_DEFECTS",
              "COLOUR_DEFECTS"],
    "check": ["check_dataset", "CheckReport"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
