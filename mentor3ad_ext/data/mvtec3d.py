"""Listing the samples of a dataset in the MVTec 3D-AD folder layout.

::

    <root>/<class>/train/good/{rgb/*.png, xyz/*.tiff}
    <root>/<class>/validation/good/{rgb/*.png, xyz/*.tiff}
    <root>/<class>/test/{good,<defect>}/{rgb/*.png, xyz/*.tiff, gt/*.png}
    <root>/<class>/calibration/camera_parameters.json

Files of one sample share a stem (``000.png``, ``000.tiff``, ``000.png``).  The synthetic
generator and the Eyecandies converter write this layout too.

Listing only looks at names (no decoding), so it is cheap; problems it can see from names (a
missing folder, an rgb image without its cloud, ...) raise `DatasetError`, or, when the caller
passes a ``problems`` list, are appended to it and the affected sample is left out (used by the
dataset checker and by ``on_error="skip"``, which both report what they left out).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import DatasetError
from .records import FORMAT_MVTEC3D, SampleRecord

MVTEC3D_CLASSES = ("bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach",
                   "potato", "rope", "tire")
MVTEC3D_SPLITS = ("train", "validation", "test")
RGB_EXTS = (".png",)
XYZ_EXTS = (".tiff", ".tif")
GT_EXTS = (".png",)


def _report(problems: list[DatasetError] | None, err: DatasetError) -> None:
    if problems is None:
        raise err
    problems.append(err)


def _files_by_stem(folder: Path, exts: Sequence[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for entry in os.scandir(folder):
        name = entry.name
        if name.startswith("."):
            continue  # hidden files and our own temporaries
        stem, ext = os.path.splitext(name)
        if ext.lower() in exts and entry.is_file():
            out[stem] = Path(entry.path)
    return out


def _sort_key(stem: str) -> tuple:
    # Numeric stems sort numerically (2 < 10), anything else after them by name.
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def find_classes(root: str | os.PathLike) -> list[str]:
    """The class folders under ``root``: sub-folders holding a train or test split."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "dataset folder not found")
    return sorted(e.name for e in os.scandir(root)
                  if e.is_dir() and not e.name.startswith(".")
                  and any(os.path.isdir(os.path.join(e.path, s)) for s in ("train", "test")))


def resolve_classes(root: Path, classes: str | Iterable[str] | None,
                    available: Sequence[str]) -> list[str]:
    """Turn a class argument (name, names or None = all) into a checked list of names."""
    if classes is None:
        if not available:
            raise DatasetError(root, "no class folders found (expected <root>/<class>/train, "
                                     "<root>/<class>/test)")
        return list(available)
    names = [classes] if isinstance(classes, str) else list(classes)
    for name in names:
        if name not in available:
            raise DatasetError(root / name, f"class folder not found; classes under {root}: "
                                            f"{', '.join(available) or 'none'}")
    return names


def _list_defect_folder(class_name: str, split: str, defect: str, folder: Path,
                        problems: list[DatasetError] | None) -> list[SampleRecord]:
    need_gt = split == "test"
    subdirs = {"rgb": folder / "rgb", "xyz": folder / "xyz", "gt": folder / "gt"}
    for name in ("rgb", "xyz") + (("gt",) if need_gt and defect != "good" else ()):
        if not subdirs[name].is_dir():
            _report(problems, DatasetError(subdirs[name], "folder not found"))
            return []
    rgbs = _files_by_stem(subdirs["rgb"], RGB_EXTS)
    xyzs = _files_by_stem(subdirs["xyz"], XYZ_EXTS)
    # Good test samples have all-zero masks in MVTec 3D-AD; a missing gt folder there is fine
    # (the mask is known to be empty), a missing file in an existing folder is not.
    has_gt = subdirs["gt"].is_dir() and split == "test"
    gts = _files_by_stem(subdirs["gt"], GT_EXTS) if has_gt else {}
    if not rgbs and not xyzs:
        _report(problems, DatasetError(folder, "no samples (rgb/*.png, xyz/*.tiff) found"))
        return []
    records = []
    for stem in sorted(set(rgbs) | set(xyzs) | set(gts), key=_sort_key):
        missing = []
        if stem not in rgbs:
            missing.append(subdirs["rgb"] / f"{stem}.png")
        if stem not in xyzs:
            missing.append(subdirs["xyz"] / f"{stem}.tiff")
        if has_gt and stem not in gts:
            missing.append(subdirs["gt"] / f"{stem}.png")
        if missing:
            for path in missing:
                _report(problems, DatasetError(path, "file not found (the other files of "
                                                     f"sample {stem!r} exist)"))
            continue
        records.append(SampleRecord(class_name=class_name, split=split, defect=defect,
                                    sample_id=stem, rgb=rgbs[stem], xyz=xyzs[stem],
                                    gt=gts.get(stem), fmt=FORMAT_MVTEC3D))
    return records


def list_mvtec3d_samples(root: str | os.PathLike, classes: str | Iterable[str] | None = None,
                         splits: str | Iterable[str] = ("train",), *,
                         problems: list[DatasetError] | None = None) -> list[SampleRecord]:
    """List the samples of ``classes`` (None: all) and ``splits`` under an MVTec 3D-AD root.

    Order: class, split, defect ("good" first, then by name), sample stem.
    """
    root = Path(root)
    class_names = resolve_classes(root, classes, find_classes(root))
    split_names = [splits] if isinstance(splits, str) else list(splits)
    for split in split_names:
        if split not in MVTEC3D_SPLITS:
            raise ValueError(f"split must be one of {MVTEC3D_SPLITS}, got {split!r}")
    records: list[SampleRecord] = []
    for class_name in class_names:
        for split in split_names:
            split_dir = root / class_name / split
            if not split_dir.is_dir():
                _report(problems, DatasetError(split_dir, "split folder not found"))
                continue
            defects = sorted((e.name for e in os.scandir(split_dir)
                              if e.is_dir() and not e.name.startswith(".")),
                             key=lambda d: (d != "good", d))
            if not defects:
                _report(problems, DatasetError(split_dir, "no defect folders (e.g. good/) found"))
                continue
            if defects == ["data"]:
                _report(problems, DatasetError(split_dir / "data", "this is the original "
                                               "Eyecandies layout; read it with "
                                               "EyecandiesDataset"))
                continue
            for defect in defects:
                if split != "test" and defect != "good":
                    _report(problems, DatasetError(split_dir / defect, f"the {split} split may "
                                                   f"only hold normal samples (good/)"))
                    continue
                records += _list_defect_folder(class_name, split, defect, split_dir / defect,
                                               problems)
    return records


def read_camera_parameters(path: str | os.PathLike) -> dict:
    """Read a ``calibration/camera_parameters.json`` (returned as the plain dict)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            params = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(path, f"cannot parse JSON: {err}") from err
    if not isinstance(params, dict):
        raise DatasetError(path, f"expected a JSON object, got {type(params).__name__}")
    return params
