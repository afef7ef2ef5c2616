"""The Eyecandies dataset (Bonfiglioli et al., ACCV 2022): reading the original release.

Original layout (one folder per class, one "underfolder" per split)::

    <root>/<Class>/{train,val,test_public}/data/<idx>_image_{0..5}.png   6 lighting conditions
                                              /<idx>_depth.png           16-bit depth
                                              /<idx>_info_depth.yaml     depth normalisation
                                              /<idx>_mask.png            gt (test_public)
                                              /<idx>_pose.txt, _normals.png, ... (unused here)

Choices, following the established 3D-AD codebases (M3DM, CPMF, Shape-Guided all use the
same conversion script) and the official Eyecandies ``DepthToMetersStage``:

* depth in metres = ``png / 65535 * (max - min) + min`` with ``normalization.min/max`` from
  ``info_depth.yaml``;
* organized cloud by pinhole back-projection with f = 711.11 px (the same camera rendered every
  image) and the principal point at the image centre ``(W / 2, H / 2)``; pixels with depth <= 0
  are holes;
* the cloud stays in the camera frame (like MVTec 3D-AD): ``pose.txt`` is not applied.  The
  established scripts additionally rotate and rescale the cloud with hand-tuned constants to cut
  the conveyor away; we instead run the generic background-plane removal of `preprocess`;
* RGB is ``image_4`` (the lighting the 3D-AD codebases use);
* a test sample is anomalous when its ``mask.png`` marks any pixel; all anomalies go to one
  defect folder, ``bad`` (Eyecandies has per-type masks, but the benchmarks score them together);
* splits are exposed under the MVTec 3D-AD names: train, validation (= val), test
  (= test_public).  ``test_private`` has no masks and is not read.

`convert_eyecandies` writes the MVTec 3D-AD layout from the original release, and the datasets
also read such an already-converted folder.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .io import open_image, read_gt, write_gt, write_xyz
from .mvtec3d import _report, resolve_classes
from .records import FORMAT_EYECANDIES, SampleRecord, load_raw

EYECANDIES_CLASSES = ("CandyCane", "ChocolateCookie", "ChocolatePraline", "Confetto",
                      "GummyBear", "HazelnutTruffle", "LicoriceSandwich", "Lollipop",
                      "Marshmallow", "PeppermintCandy")
EYECANDIES_FOCAL_LENGTH = 711.11  # pixels; one camera for the whole dataset
EYECANDIES_RGB_ITEM = "image_4"

# Our (MVTec 3D-AD) split name -> the folder of the original release.
_SPLIT_DIRS = {"train": "train", "validation": "val", "test": "test_public"}
_SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation",
                  "test": "test", "test_public": "test"}
_ITEM_RE = re.compile(r"^(\d+)_(.+)$")


def canonical_split(split: str) -> str:
    try:
        return _SPLIT_ALIASES[split]
    except KeyError:
        raise ValueError(f"split must be one of {sorted(_SPLIT_ALIASES)}, got {split!r}") from None


# ---------------------------------------------------------------------------------------------
# info_depth.yaml: a two-level mapping.  A tiny block-YAML reader keeps PyYAML out of the
# dependencies; it understands nested "key: value" mappings, inline "{a: 1, b: 2}" mappings,
# comments and quoted strings, which is all these files use.
# ---------------------------------------------------------------------------------------------

def _scalar(text: str):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None, "~": None}.get(text.lower(), text)


def _flow_mapping(text: str) -> dict:
    body = text.strip()[1:-1].strip()
    out = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, value = part.partition(":")
        if not sep:
            raise ValueError(f"bad inline mapping entry {part!r}")
        out[_scalar(key)] = _scalar(value)
    return out


def parse_simple_yaml(text: str) -> dict:
    """Parse the block-mapping subset of YAML used by Eyecandies' ``info_*.yaml`` files.

    Sequences ("- item" lines) are skipped; anything else unexpected raises ``ValueError``.
    """
    root: dict = {}
    stack: list[tuple[int, dict]] = [(-1, root)]
    skip_indent: int | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip() or line.strip() in ("---", "..."):
            continue
        indent = len(line) - len(line.lstrip(" "))
        content = line.strip()
        if skip_indent is not None:
            if indent > skip_indent or content.startswith("- "):
                continue
            skip_indent = None
        if content.startswith("-"):
            continue  # a sequence item of a key whose value we do not need
        key, sep, value = content.partition(":")
        if not sep:
            raise ValueError(f"line {lineno}: expected 'key: value', got {content!r}")
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        key = _scalar(key)
        value = value.strip()
        if not value:
            child: dict = {}
            parent[key] = child
            stack.append((indent, child))
        elif value.startswith("{") and value.endswith("}"):
            parent[key] = _flow_mapping(value)
        elif value.startswith("[") or value in ("|", ">"):
            parent[key] = value
            skip_indent = indent  # block scalars and flow lists: not needed, skip the body
        else:
            parent[key] = _scalar(value)
    return root


def read_info_depth(path: str | os.PathLike) -> tuple[float, float]:
    """``(min, max)`` depth in metres from an Eyecandies ``info_depth.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "file not found")
    try:
        info = parse_simple_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DatasetError(path, f"cannot parse depth info YAML: {err}") from err
    norm = info.get("normalization")
    if not isinstance(norm, dict):
        raise DatasetError(path, "no 'normalization' mapping (expected normalization.min/max)")
    values = []
    for key in ("min", "max"):
        value = norm.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not np.isfinite(value):
            raise DatasetError(path, f"normalization.{key} must be a finite number, got {value!r}")
        values.append(float(value))
    if values[1] < values[0]:
        raise DatasetError(path, f"normalization.max ({values[1]}) < normalization.min "
                                 f"({values[0]})")
    return values[0], values[1]


def read_eyecandies_depth(depth_path: str | os.PathLike,
                          info_path: str | os.PathLike | None) -> np.ndarray:
    """Metric depth ``float32 (H, W)`` from a 16-bit depth PNG and its normalisation yaml."""
    if info_path is None:
        raise DatasetError(depth_path, "no info_depth.yaml next to this depth image")
    img = open_image(depth_path, "16-bit depth PNG")
    if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise DatasetError(depth_path, f"expected a 16-bit single-channel depth PNG, got PIL mode "
                                       f"{img.mode!r}")
    raw = np.asarray(img)
    if raw.min() < 0 or raw.max() > 65535:
        raise DatasetError(depth_path, "depth values outside the 16-bit range 0..65535")
    lo, hi = read_info_depth(info_path)
    return (raw.astype(np.float32) / np.float32(65535.0) * np.float32(hi - lo)
            + np.float32(lo))


def depth_to_organized_xyz(depth: np.ndarray,
                           focal_length: float = EYECANDIES_FOCAL_LENGTH) -> np.ndarray:
    """Back-project a metric z-depth map ``(H, W)`` to an organized cloud ``float32 (H, W, 3)``.

    Pinhole camera with square pixels, focal ``focal_length`` px and principal point
    ``(W / 2, H / 2)`` (the convention of the Eyecandies code).  Pixels with depth <= 0 or a
    non-finite depth become holes ``(0, 0, 0)``.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {tuple(depth.shape)}")
    h, w = depth.shape
    valid = np.isfinite(depth) & (depth > 0)
    z = np.where(valid, depth, np.float32(0))
    inv_f = np.float32(1.0 / focal_length)
    u = (np.arange(w, dtype=np.float32) - np.float32(w / 2)) * inv_f
    v = (np.arange(h, dtype=np.float32) - np.float32(h / 2)) * inv_f
    xyz = np.empty((h, w, 3), dtype=np.float32)
    xyz[..., 0] = z * u[None, :]
    xyz[..., 1] = z * v[:, None]
    xyz[..., 2] = z
    return xyz


def read_eyecandies_xyz(depth_path: str | os.PathLike,
                        info_path: str | os.PathLike | None) -> np.ndarray:
    return depth_to_organized_xyz(read_eyecandies_depth(depth_path, info_path))


# ---------------------------------------------------------------------------------------------
# Listing
# ---------------------------------------------------------------------------------------------

def is_eyecandies_original(root: str | os.PathLike, class_name: str) -> bool:
    """True when ``root/class_name`` is in the original release layout (``<split>/data/``)."""
    base = Path(root) / class_name
    return any((base / d / "data").is_dir() for d in _SPLIT_DIRS.values())


def find_eyecandies_classes(root: str | os.PathLike) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "dataset folder not found")
    return sorted(e.name for e in os.scandir(root)
                  if e.is_dir() and not e.name.startswith(".")
                  and is_eyecandies_original(root, e.name))


def _group_items(data_dir: Path) -> dict[str, dict[str, Path]]:
    groups: dict[str, dict[str, Path]] = {}
    for entry in os.scandir(data_dir):
        match = _ITEM_RE.match(entry.name)
        if match and entry.is_file():
            idx, item = match.groups()
            groups.setdefault(idx, {})[item] = Path(entry.path)
    return groups


def list_eyecandies_samples(root: str | os.PathLike, classes: str | Iterable[str] | None = None,
                            splits: str | Iterable[str] = ("train",), *, strict_gt: bool = True,
                            problems: list[DatasetError] | None = None) -> list[SampleRecord]:
    """List samples of the original Eyecandies release (see the module docstring).

    Test samples' masks are read here to label them (good / bad).
    """
    root = Path(root)
    class_names = resolve_classes(root, classes, find_eyecandies_classes(root))
    split_names = [canonical_split(s) for s in ([splits] if isinstance(splits, str) else splits)]
    records: list[SampleRecord] = []
    for class_name in class_names:
        for split in split_names:
            data_dir = root / class_name / _SPLIT_DIRS[split] / "data"
            if not data_dir.is_dir():
                _report(problems, DatasetError(data_dir, "split folder not found"))
                continue
            groups = _group_items(data_dir)
            if not groups:
                _report(problems, DatasetError(data_dir, "no samples (<idx>_depth.png, ...) found"))
            split_records = []
            for idx in sorted(groups, key=int):
                names = groups[idx]  # item name with extension -> path
                required = [f"{EYECANDIES_RGB_ITEM}.png", "depth.png", "info_depth.yaml"]
                if split == "test":
                    required.append("mask.png")
                missing = [r for r in required if r not in names]
                if missing:
                    for name in missing:
                        _report(problems, DatasetError(data_dir / f"{idx}_{name}",
                                                       f"file not found (other files of sample "
                                                       f"{idx!r} exist)"))
                    continue
                gt = names.get("mask.png")
                defect = "good"
                if split == "test":
                    try:
                        defect = "bad" if read_gt(gt, strict=strict_gt).any() else "good"
                    except DatasetError as err:
                        _report(problems, err)
                        continue
                split_records.append(SampleRecord(
                    class_name=class_name, split=split, defect=defect, sample_id=idx,
                    rgb=names[f"{EYECANDIES_RGB_ITEM}.png"], xyz=names["depth.png"], gt=gt,
                    fmt=FORMAT_EYECANDIES, info_depth=names["info_depth.yaml"]))
            # Same order as the MVTec listing: good first, then defects, by index.
            records += sorted(split_records, key=lambda r: r.defect != "good")
    return records


# ---------------------------------------------------------------------------------------------
# Conversion to the MVTec 3D-AD layout
# ---------------------------------------------------------------------------------------------

def convert_eyecandies(src: str | os.PathLike, dst: str | os.PathLike,
                       classes: str | Iterable[str] | None = None,
                       splits: Iterable[str] = ("train", "validation", "test"), *,
                       strict_gt: bool = True) -> dict[str, int]:
    """Write the original Eyecandies release at ``src`` in the MVTec 3D-AD layout at ``dst``.

    rgb = ``image_4`` (copied byte for byte), xyz = the back-projected depth (float32 TIFF),
    gt = binary 0/255 PNG for test samples.  Returns the number of samples written per class.
    Every sample is fully read and checked first, so a bad file stops the conversion with a
    `DatasetError` instead of producing a dataset with a hole in it.
    """
    dst = Path(dst)
    records = list_eyecandies_samples(src, classes, tuple(splits), strict_gt=strict_gt)
    counts: dict[str, int] = {}
    for rec in records:
        raw = load_raw(rec, strict_gt=strict_gt)
        stem = rec.sample_id.zfill(3)
        out = dst / rec.class_name / rec.split / rec.defect
        (out / "rgb").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rec.rgb, out / "rgb" / f"{stem}.png")
        write_xyz(out / "xyz" / f"{stem}.tiff", raw.xyz)
        if rec.split == "test":
            write_gt(out / "gt" / f"{stem}.png", raw.gt)
        counts[rec.class_name] = counts.get(rec.class_name, 0) + 1
        calib = dst / rec.class_name / "calibration" / "camera_parameters.json"
        if not calib.exists():
            h, w = raw.rgb.shape[:2]
            calib.parent.mkdir(parents=True, exist_ok=True)
            calib.write_text(json.dumps({
                "source": "Eyecandies (converted by mentor3ad_ext)",
                "fx": EYECANDIES_FOCAL_LENGTH, "fy": EYECANDIES_FOCAL_LENGTH,
                "cx": w / 2, "cy": h / 2, "image_width": w, "image_height": h}, indent=2))
    return counts
