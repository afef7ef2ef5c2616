"""Validating a dataset folder (``mentor3ad data check DIR``).

Reads every sample through the same loader the datasets use, so anything the checker passes
loads in training and evaluation.  Reports counts per class/split/defect, image sizes, points per
cloud, and every problem with its file path.  Problems (the dataset would fail to load, or load
wrong) make the check fail; warnings (suspicious but loadable, e.g. a defect sample whose mask is
empty, a missing calibration file) do not.

Understands the MVTec 3D-AD layout (also synthetic data and converted Eyecandies) and the
original Eyecandies release, class by class.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .eyecandies import find_eyecandies_classes, list_eyecandies_samples
from .io import valid_mask
from .mvtec3d import MVTEC3D_SPLITS, find_classes, list_mvtec3d_samples, read_camera_parameters
from .mvtec3d import resolve_classes
from .records import SampleRecord, load_raw

REQUIRED_SPLITS = ("train", "test")


@dataclass
class CheckReport:
    root: Path
    counts: dict[str, Counter] = field(default_factory=dict)       # class -> split/defect -> n
    layouts: dict[str, str] = field(default_factory=dict)          # class -> layout name
    image_sizes: dict[str, Counter] = field(default_factory=dict)  # class -> "HxW" -> n
    points: dict[str, list[int]] = field(default_factory=dict)     # class -> valid points
    problems: list[DatasetError] = field(default_factory=list)
    warnings: list[DatasetError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def n_samples(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    def format(self) -> str:
        """A human-readable report."""
        lines = [f"dataset: {self.root}"]
        for cls in sorted(self.counts):
            sizes = ", ".join(f"{s} x{n}" for s, n in sorted(self.image_sizes[cls].items()))
            pts = self.points[cls]
            pts_text = (f"points per cloud min {min(pts)} / median {int(np.median(pts))} / "
                        f"max {max(pts)}" if pts else "no readable clouds")
            lines.append(f"{cls} [{self.layouts[cls]}]: {sum(self.counts[cls].values())} "
                         f"samples; sizes {sizes or '-'}; {pts_text}")
            for key in sorted(self.counts[cls], key=_split_order):
                lines.append(f"  {key:<28} {self.counts[cls][key]:>6}")
        for title, items in (("warning", self.warnings), ("problem", self.problems)):
            for err in items:
                lines.append(f"{title}: {err.path}: {err.problem}")
        lines.append(f"{self.n_samples} samples, {len(self.problems)} problem(s), "
                     f"{len(self.warnings)} warning(s): " + ("OK" if self.ok else "FAILED"))
        return "\n".join(lines)


def _split_order(key: str) -> tuple:
    split, _, defect = key.partition("/")
    order = MVTEC3D_SPLITS.index(split) if split in MVTEC3D_SPLITS else len(MVTEC3D_SPLITS)
    return (order, defect != "good", defect)


def _list_class(root: Path, cls: str, original: bool, report: CheckReport,
                strict_gt: bool) -> list[SampleRecord]:
    if original:
        report.layouts[cls] = "eyecandies"
        return list_eyecandies_samples(root, cls, ("train", "validation", "test"),
                                       strict_gt=strict_gt, problems=report.problems)
    report.layouts[cls] = "mvtec3d"
    present = [s for s in MVTEC3D_SPLITS if (root / cls / s).is_dir()]
    for split in REQUIRED_SPLITS:
        if split not in present:
            report.problems.append(DatasetError(root / cls / split, "split folder not found"))
    calib = root / cls / "calibration" / "camera_parameters.json"
    if not calib.exists():
        report.warnings.append(DatasetError(calib, "file not found"))
    else:
        try:
            read_camera_parameters(calib)
        except DatasetError as err:
            report.problems.append(err)
    return list_mvtec3d_samples(root, cls, present, problems=report.problems) if present else []


def _check_record(rec: SampleRecord, strict_gt: bool):
    try:
        raw = load_raw(rec, strict_gt=strict_gt)
    except DatasetError as err:
        return rec, err, None, 0, None
    size = f"{raw.rgb.shape[0]}x{raw.rgb.shape[1]}"
    warning = None
    if rec.label == 1 and not raw.gt.any():
        warning = DatasetError(rec.gt, "defect sample with an empty mask (no anomalous pixel)")
    return rec, None, size, int(valid_mask(raw.xyz).sum()), warning


def check_dataset(root: str | os.PathLike, classes: str | Iterable[str] | None = None, *,
                  strict_gt: bool = True, workers: int = 1,
                  progress: Callable[[str], None] | None = None) -> CheckReport:
    """Check every sample of ``classes`` (None: all) under ``root``; see the module docstring."""
    root = Path(root)
    report = CheckReport(root=root)
    if not root.is_dir():
        report.problems.append(DatasetError(root, "dataset folder not found"))
        return report
    original = set(find_eyecandies_classes(root))
    available = sorted(original | set(find_classes(root)))
    try:
        names = resolve_classes(root, classes, available)
    except DatasetError as err:
        report.problems.append(err)
        return report
    for cls in names:
        report.counts[cls] = Counter()
        report.image_sizes[cls] = Counter()
        report.points[cls] = []
        records = _list_class(root, cls, cls in original, report, strict_gt)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = pool.map(lambda r: _check_record(r, strict_gt), records)
            for rec, err, size, n_points, warning in results:
                report.counts[cls][f"{rec.split}/{rec.defect}"] += 1
                if err is not None:
                    report.problems.append(err)
                    continue
                report.image_sizes[cls][size] += 1
                report.points[cls].append(n_points)
                if warning is not None:
                    report.warnings.append(warning)
        if progress is not None:
            progress(f"{cls}: {len(records)} sample(s) checked")
    return report
