"""Extracting and caching the frozen extractors' raw outputs, then bringing them to the grid.

`FeatureCache`: one ``.pt`` file per (extractor, sample), keyed by the SHA-256 of the
extractor's `identity()` and the sample's source files (path, size, mtime) and preprocessing,
written atomically (temporary file + ``os.replace``).  Features are stored in float16 (rgb
tokens 784 x 768, Point-MAE group features 1024 x 1152; centers stay float32, they are
coordinates in metres where float16 would lose 0.2 mm).

`extract_features` runs both extractors over a dataset (sharded over the ranks of a
distributed run) and returns `SampleFeatures`; `grid_rows` brings them to the shared patch grid
and keeps the foreground cells, which is all that training needs.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._atomic import atomic_write
from .._torch_file import load_verified
from ..models.extractors import extract_raw, extractor_identity

CACHE_FORMAT = 1


def default_feature_cache_dir() -> Path:
    env = os.environ.get("MENTOR3AD_FEATURE_CACHE_DIR")
    if env:
        return Path(env)
    from ..data.cache import default_cache_dir

    return default_cache_dir().parent / "features"


class FeatureCache:
    """Per-sample raw extractor outputs on disk (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else default_feature_cache_dir()
        self.hits = self.misses = 0

    @staticmethod
    def extractor_key(extractor) -> str:
        blob = json.dumps({"identity": extractor_identity(extractor), "format": CACHE_FORMAT},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @staticmethod
    def sample_key(dataset, index: int) -> str:
        rec = dataset.records[index]
        stamps = []
        for path in rec.source_files:
            p = Path(path).absolute()
            st = p.stat()
            stamps.append([str(p), st.st_size, st.st_mtime_ns])
        blob = json.dumps({"files": stamps, "pre": dataset.config.cache_params()}, sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, ext_key: str, sample_key: str) -> Path:
        return self.directory / ext_key / f"{sample_key}.pt"

    def load(self, ext_key: str, sample_key: str) -> dict | None:
        p = self.path(ext_key, sample_key)
        if not p.is_file():
            self.misses += 1
            return None
        try:
            value = load_verified(p)
        except Exception:  # noqa: BLE001 - a corrupt entry (bad checksum included) is rebuilt
            p.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return value

    def save(self, ext_key: str, sample_key: str, value: dict) -> None:
        try:
            with atomic_write(self.path(ext_key, sample_key)) as fh:
                torch.save(value, fh)
        except OSError:  # an unwritable cache only costs time
            pass


@dataclass
class SampleFeatures:
    """Cached raw outputs of both extractors plus what the grid, the maps and the report need."""

    raw_rgb: dict
    raw_xyz: dict
    xyz: torch.Tensor        # (3, S, S) float32
    valid: torch.Tensor      # (S, S) bool
    gt: torch.Tensor         # (S, S) bool
    label: int
    defect: str
    sample_id: str
    path: str
    index: int

    def batch(self) -> dict:
        return {"xyz": self.xyz[None], "valid": self.valid[None]}


def collate_features(items: Sequence[SampleFeatures]) -> tuple[dict, tuple[list, list]]:
    batch = {"xyz": torch.stack([s.xyz for s in items]),
             "valid": torch.stack([s.valid for s in items])}
    return batch, ([s.raw_rgb for s in items], [s.raw_xyz for s in items])


def extract_features(dataset, extractors: Sequence, *, batch_size: int = 4,
                     cache: FeatureCache | None = None, num_workers: int = 0,
                     rank: int = 0, world_size: int = 1, desc: str = "features",
                     progress: bool = True) -> list[SampleFeatures | None]:
    """Raw features of every sample of ``dataset`` (from the cache where possible).

    In a distributed run each rank extracts (and caches) the samples ``rank::world_size``; the
    others are returned as None unless they are already cached (callers then synchronise and
    call again, which reads everything from the cache).
    """
    from tqdm import tqdm

    from ..data import collate_samples

    rgb_ext, xyz_ext = extractors
    keys = (FeatureCache.extractor_key(rgb_ext), FeatureCache.extractor_key(xyz_ext))
    out: list[SampleFeatures | None] = [None] * len(dataset)
    todo: list[int] = []
    samples_keys = {}
    for i in range(len(dataset)):
        if cache is not None:
            sk = samples_keys[i] = FeatureCache.sample_key(dataset, i)
            r, x = cache.load(keys[0], sk), cache.load(keys[1], sk)
            if r is not None and x is not None:
                s = dataset[i]
                out[i] = _features(s, r, x)
                continue
        if i % world_size == rank:
            todo.append(i)
    bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not progress or not todo,
               leave=False)
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        samples = [dataset[i] for i in idx]
        batch = collate_samples(samples)
        raws_r = extract_raw(rgb_ext, batch)
        raws_x = extract_raw(xyz_ext, batch)
        for i, s, r, x in zip(idx, samples, raws_r, raws_x):
            if cache is not None:
                cache.save(keys[0], samples_keys[i], r)
                cache.save(keys[1], samples_keys[i], x)
            out[i] = _features(s, r, x)
        bar.update(len(idx))
    bar.close()
    return out


def _features(sample: dict, raw_r: dict, raw_x: dict) -> SampleFeatures:
    return SampleFeatures(raw_rgb=raw_r, raw_xyz=raw_x, xyz=sample["xyz"], valid=sample["valid"],
                          gt=sample["gt"], label=int(sample["label"]), defect=sample["defect"],
                          sample_id=sample["sample_id"], path=sample["path"],
                          index=int(sample["index"]))


@dataclass
class Rows:
    """Foreground patch rows of a set of images: ``rgb (N, C_r)``, ``xyz (N, C_x)`` float16,
    ``image (N,)`` the image each row belongs to."""

    rgb: torch.Tensor
    xyz: torch.Tensor
    image: torch.Tensor
    n_images: int
    offsets: list[int] = field(default_factory=list)

    def of_images(self, images: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [slice(self.offsets[i], self.offsets[i + 1]) for i in images]
        return (torch.cat([self.rgb[p] for p in parts]), torch.cat([self.xyz[p] for p in parts]))


@torch.no_grad()
def grid_rows(model, features: Sequence[SampleFeatures], batch_size: int = 8,
              progress: bool = False, desc: str = "grid") -> Rows:
    """Bring cached features to the shared grid and keep the foreground cells as rows."""
    from tqdm import tqdm

    rgb, xyz, image, offsets = [], [], [], [0]
    for start in tqdm(range(0, len(features), batch_size), desc=desc, leave=False,
                      disable=not progress):
        chunk = features[start:start + batch_size]
        batch, raws = collate_features(chunk)
        f_r, f_x, fg = model.grid_features(batch, raws)
        for j in range(len(chunk)):
            m = fg[j]
            rgb.append(f_r[j].permute(1, 2, 0)[m].to(torch.float16).cpu())
            xyz.append(f_x[j].permute(1, 2, 0)[m].to(torch.float16).cpu())
            image.append(torch.full((int(m.sum()),), start + j, dtype=torch.int64))
            offsets.append(offsets[-1] + int(m.sum()))
    return Rows(torch.cat(rgb), torch.cat(xyz), torch.cat(image), len(features), offsets)


def predict_features(model, features: Sequence[SampleFeatures], batch_size: int = 8, vm=None,
                     progress: bool = False, desc: str = "predict",
                     callback: Callable | None = None) -> dict:
    """Maps and scores of cached samples: ``{"map": (N, S, S), "score": (N,), "maps": {...}}``."""
    from tqdm import tqdm

    model.heads.eval()
    maps, scores, cands = [], [], {}
    for start in tqdm(range(0, len(features), batch_size), desc=desc, leave=False,
                      disable=not progress):
        chunk = features[start:start + batch_size]
        batch, raws = collate_features(chunk)
        out = model.predict(batch, raws, vm=vm)
        maps.append(out["map"].cpu())
        scores.append(out["score"].cpu())
        for k, v in out["maps"].items():
            cands.setdefault(k, []).append(v.cpu())
    return {"map": torch.cat(maps), "score": torch.cat(scores),
            "maps": {k: torch.cat(v) for k, v in cands.items()}}
