"""Torch datasets over MVTec 3D-AD style folders and Eyecandies, and the batch collate.

A sample is a dict:

=============== ======================= ==================================================
key             type                    meaning
=============== ======================= ==================================================
rgb             float32 (3, S, S)       normalised image (ImageNet mean/std by default)
xyz             float32 (3, S, S)       organized cloud after plane removal, zeros = holes
valid           bool (S, S)             pixels holding a point
points          float32 (P, 3)          the kept points, row-major pixel order
pixel_index     int64 (P,)              row * S + col of every point
gt              bool (S, S)             ground truth (True = anomalous)
label           int64 ()                0 good, 1 defective
class_name      str
split           str                     train / validation / test
defect          str                     "good" or the defect folder name
sample_id       str                     file stem
path            str                     the rgb file (to find the sample on disk)
index           int                     position in the dataset
=============== ======================= ==================================================

`collate_samples` stacks the fixed-size tensors and pads the ragged clouds to ``(B, P_max, 3)``
with ``lengths (B,)`` int64 (pytorch3d convention; padded points are 0, padded pixel indices -1).

Bad input raises `DatasetError` naming the file.  ``on_error="skip"`` instead loads every
sample up front, leaves out the ones that fail and reports them (a warning, and the
``skipped`` list of ``(path, problem)``): a test image is never dropped silently, because that
would change the metrics.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from .cache import CacheStats, PreprocessCache
from .errors import DatasetError
from .eyecandies import canonical_split, find_eyecandies_classes, list_eyecandies_samples
from .mvtec3d import find_classes, list_mvtec3d_samples, resolve_classes
from .preprocess import PreprocessConfig, Preprocessed, preprocess_arrays, to_sample
from .records import SampleRecord, load_raw

_ON_ERROR = ("raise", "skip")


class AnomalyDetectionDataset(Dataset):
    """Preprocessed, cached samples of a list of `SampleRecord`.

    Args:
        records: the samples, in order.
        preprocess: a `PreprocessConfig` (default: 224 x 224, plane removal, ImageNet stats).
        cache: keep preprocessed samples on disk (see `cache`); False recomputes every time.
        cache_dir: cache folder (default `cache.default_cache_dir()`).
        on_error: "raise" (default) or "skip" (see the module docstring).
        skipped: problems already found while listing (reported with the others).
    """

    def __init__(self, records: Iterable[SampleRecord], *,
                 preprocess: PreprocessConfig | None = None, cache: bool = True,
                 cache_dir: str | os.PathLike | None = None, on_error: str = "raise",
                 skipped: Iterable[tuple[str, str]] = ()):
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
        self.config = preprocess if preprocess is not None else PreprocessConfig()
        self.cache = PreprocessCache(cache_dir) if cache else None
        self.on_error = on_error
        self.records: list[SampleRecord] = list(records)
        self.skipped: list[tuple[str, str]] = list(skipped)
        if on_error == "skip":
            kept = []
            for rec in self.records:
                try:
                    self._load(rec)  # also fills the cache, so this is not wasted work
                except DatasetError as err:
                    self.skipped.append((str(err.path), err.problem))
                else:
                    kept.append(rec)
            self.records = kept
        if self.skipped:
            shown = "\n".join(f"  {path}: {problem}" for path, problem in self.skipped[:10])
            more = f"\n  ... and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
            warnings.warn(f"on_error='skip': left out {len(self.skipped)} problem(s); the "
                          f"dataset has {len(self.records)} sample(s):\n{shown}{more}",
                          RuntimeWarning, stacklevel=2)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[int]:
        return [rec.label for rec in self.records]

    @property
    def cache_stats(self) -> CacheStats:
        """Hits, misses and corrupt files seen by this process (each worker counts its own)."""
        return self.cache.stats if self.cache is not None else CacheStats()

    def _load(self, rec: SampleRecord) -> Preprocessed:
        key = None
        if self.cache is not None:
            key = self.cache.key(rec.source_files, self.config.cache_params())
            pre = self.cache.load(key)
            if pre is not None:
                return pre
        raw = load_raw(rec, strict_gt=self.config.strict_gt)
        pre = preprocess_arrays(raw.rgb, raw.xyz, raw.gt, self.config)
        if key is not None:
            self.cache.save(key, pre)
        return pre

    def __getitem__(self, index: int) -> dict:
        if not -len(self.records) <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} samples")
        index = index % len(self.records)
        rec = self.records[index]
        sample = to_sample(self._load(rec), self.config)
        sample.update(label=torch.tensor(rec.label, dtype=torch.int64),
                      class_name=rec.class_name, split=rec.split, defect=rec.defect,
                      sample_id=rec.sample_id, path=str(rec.rgb), index=index)
        return sample


def _listing_problems(on_error: str) -> list[DatasetError] | None:
    """Where listing problems go: collected with on_error="skip", raised otherwise."""
    if on_error not in _ON_ERROR:  # checked before listing, which may raise first otherwise
        raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
    return [] if on_error == "skip" else None


def _as_skipped(problems: list[DatasetError] | None) -> list[tuple[str, str]]:
    return [(str(err.path), err.problem) for err in problems or ()]


class MVTec3DDataset(AnomalyDetectionDataset):
    """MVTec 3D-AD (or any folder in its layout: synthetic data, converted Eyecandies).

    Args:
        root: the dataset folder (holding one folder per class).
        class_name: a class, a list of classes, or None for every class under ``root``.
        split: "train", "validation" or "test".
        **kwargs: see `AnomalyDetectionDataset`.
    """

    def __init__(self, root: str | os.PathLike, class_name: str | Sequence[str] | None = None,
                 split: str = "train", **kwargs):
        problems = _listing_problems(kwargs.get("on_error", "raise"))
        records = list_mvtec3d_samples(root, class_name, split, problems=problems)
        super().__init__(records, skipped=_as_skipped(problems), **kwargs)
        self.root = Path(root)


class EyecandiesDataset(AnomalyDetectionDataset):
    """Eyecandies: the original release, or a folder already converted to the MVTec layout.

    Each class is read from whichever layout it is in (see `eyecandies` for the conversion
    choices).  ``split`` accepts the MVTec names (train, validation, test) and the original ones
    (val, test_public).
    """

    def __init__(self, root: str | os.PathLike, class_name: str | Sequence[str] | None = None,
                 split: str = "train", **kwargs):
        root = Path(root)
        split = canonical_split(split)
        problems = _listing_problems(kwargs.get("on_error", "raise"))
        original = set(find_eyecandies_classes(root))
        available = sorted(original | set(find_classes(root)))
        strict_gt = kwargs.get("preprocess", PreprocessConfig()).strict_gt
        records: list[SampleRecord] = []
        for name in resolve_classes(root, class_name, available):
            if name in original:
                records += list_eyecandies_samples(root, name, split, strict_gt=strict_gt,
                                                   problems=problems)
            else:
                records += list_mvtec3d_samples(root, name, split, problems=problems)
        super().__init__(records, skipped=_as_skipped(problems), **kwargs)
        self.root = root


def pad_points(clouds: Sequence[torch.Tensor], pad_value: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ragged ``(P_i, D)`` tensors to ``(B, P_max, D)``; returns ``(padded, lengths)``."""
    lengths = torch.tensor([len(c) for c in clouds], dtype=torch.int64)
    max_len = int(lengths.max()) if len(clouds) else 0
    first = clouds[0] if len(clouds) else torch.empty(0, 3)
    out = first.new_full((len(clouds), max_len) + tuple(first.shape[1:]), pad_value)
    for i, cloud in enumerate(clouds):
        out[i, : len(cloud)] = cloud
    return out, lengths


def collate_samples(batch: Sequence[dict]) -> dict:
    """Collate sample dicts: stack tensors, pad ``points``/``pixel_index``, list the rest."""
    if not batch:
        raise ValueError("cannot collate an empty batch")
    out: dict = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        if key == "points":
            out["points"], out["lengths"] = pad_points(values, 0.0)
        elif key == "pixel_index":
            out["pixel_index"], _ = pad_points(values, -1)
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif key == "index":
            out[key] = torch.tensor(values, dtype=torch.int64)
        else:
            out[key] = list(values)
    return out


def make_loader(dataset: Dataset, batch_size: int = 1, *, shuffle: bool = False,
                num_workers: int = 0, **kwargs) -> DataLoader:
    """A DataLoader with `collate_samples` and persistent workers (the cache makes the workers'
    per-epoch cost small, so keeping them alive saves their start-up)."""
    kwargs.setdefault("persistent_workers", num_workers > 0)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      collate_fn=collate_samples, **kwargs)
