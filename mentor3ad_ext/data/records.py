"""One sample on disk (`SampleRecord`) and how to load it (`load_raw`).

Dataset listings (MVTec 3D-AD, Eyecandies) produce records; the torch datasets, the cache and
the checker only deal with records, so every on-disk format goes through one loading path with
the same checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .io import read_gt, read_rgb, read_xyz, valid_mask

FORMAT_MVTEC3D = "mvtec3d"
FORMAT_EYECANDIES = "eyecandies"


@dataclass(frozen=True)
class SampleRecord:
    """Where the files of one sample are and what it is.

    For ``fmt == "mvtec3d"`` ``xyz`` is the organized cloud TIFF; for ``fmt == "eyecandies"``
    (the original release) it is the 16-bit depth PNG and ``info_depth`` its normalisation yaml.
    ``gt`` is None for samples without a mask file (training samples): their mask is all-normal.
    """

    class_name: str
    split: str
    defect: str
    sample_id: str
    rgb: Path
    xyz: Path
    gt: Path | None = None
    fmt: str = FORMAT_MVTEC3D
    info_depth: Path | None = None

    @property
    def label(self) -> int:
        """0 for a normal ("good") sample, 1 for a defective one."""
        return 0 if self.defect == "good" else 1

    @property
    def source_files(self) -> tuple[Path, ...]:
        """Every file the sample is made from (the cache key depends on all of them)."""
        return tuple(p for p in (self.rgb, self.xyz, self.gt, self.info_depth) if p is not None)


@dataclass
class RawSample:
    rgb: np.ndarray  # uint8 (H, W, 3)
    xyz: np.ndarray  # float32 (H, W, 3), holes are (0, 0, 0)
    gt: np.ndarray   # bool (H, W)


def load_raw(record: SampleRecord, *, strict_gt: bool = True) -> RawSample:
    """Read and cross-check the files of one sample.

    Raises `DatasetError` (naming the file) for unreadable files, wrong channel counts, rgb/xyz/gt
    size mismatches, an empty point cloud, and a "good" sample whose mask marks anomalies.
    """
    rgb = read_rgb(record.rgb)
    if record.fmt == FORMAT_EYECANDIES:
        from .eyecandies import read_eyecandies_xyz  # local: avoids an import cycle

        xyz = read_eyecandies_xyz(record.xyz, record.info_depth)
    else:
        xyz = read_xyz(record.xyz)
    if xyz.shape[:2] != rgb.shape[:2]:
        raise DatasetError(record.xyz, f"size mismatch: point cloud is {_hw(xyz)} but its rgb "
                                       f"image {record.rgb} is {_hw(rgb)}")
    if not valid_mask(xyz).any():
        raise DatasetError(record.xyz, "point cloud is empty: every point is (0, 0, 0)")
    if record.gt is None:
        gt = np.zeros(rgb.shape[:2], dtype=bool)
    else:
        gt = read_gt(record.gt, strict=strict_gt)
        if gt.shape != rgb.shape[:2]:
            raise DatasetError(record.gt, f"size mismatch: mask is {_hw(gt)} but its rgb image "
                                          f"{record.rgb} is {_hw(rgb)}")
        if record.label == 0 and gt.any():
            raise DatasetError(record.gt, f"mask of a 'good' sample marks {int(gt.sum())} "
                                          f"anomalous pixel(s)")
    return RawSample(rgb=rgb, xyz=xyz, gt=gt)


def _hw(arr: np.ndarray) -> str:
    return f"{arr.shape[0]}x{arr.shape[1]} (HxW)"
