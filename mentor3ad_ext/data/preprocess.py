"""Standard preprocessing of an (rgb, organized xyz, gt) sample, as in the 3D-AD literature.

Order and choices (all configurable through `PreprocessConfig`):

1. Background plane removal at the input resolution (`plane.remove_background_plane`): the
   threshold is in metres, so it is applied where the geometry is exact, before any resampling.
   Removed points become holes (0, 0, 0).
2. Resize to ``image_size x image_size`` (224 by default, the input size of ImageNet backbones):
   rgb bilinearly (Pillow's filter, which widens its support when downscaling, i.e. antialiased
   like torchvision's ``Resize``); xyz and gt with nearest neighbour (half-pixel centres, as
   Pillow NEAREST and torch ``nearest-exact``), so holes stay holes and no point is invented
   between the object and the background.
3. The kept points: ``valid`` (where the resized cloud holds a point), ``points (P, 3)`` in
   row-major pixel order, and ``pixel_index (P,)`` = ``row * image_size + col``, the flat index of
   each point's pixel (what the point-to-pixel projection ops scatter to).
4. ImageNet normalisation of rgb, done on the fly (it is not cached, so changing it never
   invalidates the cache).

The cacheable result is `Preprocessed` (uint8 rgb, the kept points and their pixel indices, the
resized gt); `to_sample` turns it into the tensors a model consumes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .io import valid_mask
from .plane import remove_background_plane

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of the preprocessing (see the module docstring for what each step does).

    Attributes:
        image_size: side of the square output grid (rgb, xyz, gt).
        remove_plane: run background plane removal.
        plane_threshold: points closer than this to the plane (metres) are background.
        plane_border: width of the image-border band the plane is fitted to, as a fraction of
            min(H, W) of the input.
        ransac_iterations, ransac_max_points, ransac_seed: RANSAC hypotheses, scoring subsample
            size and seed.
        min_cluster_fraction: after plane removal, drop connected clusters smaller than this
            fraction of the largest one (0 disables).
        mean, std: per-channel normalisation of rgb in [0, 1]; None leaves rgb in [0, 1].
        strict_gt: refuse gt masks with values in 1..127 (see `io.read_gt`).
    """

    image_size: int = 224
    remove_plane: bool = True
    plane_threshold: float = 0.005
    plane_border: float = 0.05
    ransac_iterations: int = 256
    ransac_max_points: int = 4096
    ransac_seed: int = 0
    min_cluster_fraction: float = 0.05
    mean: tuple[float, float, float] | None = IMAGENET_MEAN
    std: tuple[float, float, float] | None = IMAGENET_STD
    strict_gt: bool = True

    def __post_init__(self):
        if not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        if self.plane_threshold < 0:
            raise ValueError(f"plane_threshold must be >= 0, got {self.plane_threshold}")
        if not 0 < self.plane_border <= 0.5:
            raise ValueError(f"plane_border must be in (0, 0.5], got {self.plane_border}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must both be given or both be None")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")

    def cache_params(self) -> dict:
        """The parameters that change the cached arrays (normalisation does not)."""
        params = dataclasses.asdict(self)
        for key in ("mean", "std"):
            params.pop(key)
        return params


@dataclass
class Preprocessed:
    """The cacheable result of preprocessing one sample (see the module docstring)."""

    rgb: np.ndarray          # uint8 (S, S, 3)
    points: np.ndarray       # float32 (P, 3)
    pixel_index: np.ndarray  # int64 (P,), row * S + col, increasing
    gt: np.ndarray           # bool (S, S)

    @property
    def size(self) -> int:
        return self.rgb.shape[0]

    def organized_xyz(self) -> np.ndarray:
        """``float32 (S, S, 3)`` with the kept points at their pixels and holes elsewhere."""
        xyz = np.zeros((self.size * self.size, 3), dtype=np.float32)
        xyz[self.pixel_index] = self.points
        return xyz.reshape(self.size, self.size, 3)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output cell for nearest resizing (half-pixel centres)."""
    idx = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def resize_nearest(arr: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of ``(H, W, ...)`` to ``(size, size, ...)``; copies nothing new."""
    rows = nearest_indices(arr.shape[0], size)
    cols = nearest_indices(arr.shape[1], size)
    return arr[rows[:, None], cols[None, :]]


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased when downscaling) resize of ``uint8 (H, W, 3)``."""
    if rgb.shape[:2] == (size, size):
        return rgb.copy()
    # np.array (not asarray): a writable copy, torch.from_numpy warns on read-only arrays
    return np.array(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))


def preprocess_arrays(rgb: np.ndarray, xyz: np.ndarray, gt: np.ndarray,
                      config: PreprocessConfig) -> Preprocessed:
    """Run steps 1-3 on decoded arrays (``uint8 (H,W,3)``, ``float32 (H,W,3)``, ``bool (H,W)``)."""
    if config.remove_plane:
        keep, _ = remove_background_plane(
            xyz, threshold=config.plane_threshold, border=config.plane_border,
            iterations=config.ransac_iterations, max_points=config.ransac_max_points,
            seed=config.ransac_seed, min_cluster_fraction=config.min_cluster_fraction)
    else:
        keep = valid_mask(xyz)
    size = config.image_size
    rows = nearest_indices(xyz.shape[0], size)
    cols = nearest_indices(xyz.shape[1], size)
    keep_small = keep[rows[:, None], cols[None, :]]
    pixel_index = np.flatnonzero(keep_small)
    src = rows[pixel_index // size] * xyz.shape[1] + cols[pixel_index % size]
    points = xyz.reshape(-1, 3)[src]
    return Preprocessed(rgb=resize_rgb(rgb, size),
                        points=np.ascontiguousarray(points, dtype=np.float32),
                        pixel_index=pixel_index.astype(np.int64),
                        gt=np.ascontiguousarray(resize_nearest(gt, size), dtype=bool))


def normalize_rgb(rgb: np.ndarray, config: PreprocessConfig) -> torch.Tensor:
    """``uint8 (S, S, 3)`` -> ``float32 (3, S, S)`` in [0, 1], then (x - mean) / std.

    Done as one multiply-add per channel in numpy: a DataLoader worker should not spin up
    torch's intra-op thread pool for a 150k-element tensor.
    """
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
    scale = np.full((3, 1, 1), 1.0 / 255.0, dtype=np.float32)
    offset = np.zeros((3, 1, 1), dtype=np.float32)
    if config.mean is not None:
        std = np.asarray(config.std, dtype=np.float32).reshape(3, 1, 1)
        scale /= std
        offset = -np.asarray(config.mean, dtype=np.float32).reshape(3, 1, 1) / std
    chw *= scale
    chw += offset
    return torch.from_numpy(chw)


def to_sample(pre: Preprocessed, config: PreprocessConfig) -> dict[str, torch.Tensor]:
    """The tensors of one sample (without metadata).

    ``rgb`` float32 (3, S, S) normalised; ``xyz`` float32 (3, S, S) organized cloud, zeros are
    holes; ``valid`` bool (S, S); ``points`` float32 (P, 3); ``pixel_index`` int64 (P,);
    ``gt`` bool (S, S).
    """
    size = pre.size
    valid = np.zeros(size * size, dtype=bool)
    valid[pre.pixel_index] = True
    return {
        "rgb": normalize_rgb(pre.rgb, config),
        "xyz": torch.from_numpy(np.ascontiguousarray(pre.organized_xyz().transpose(2, 0, 1))),
        "valid": torch.from_numpy(valid.reshape(size, size)),
        "points": torch.from_numpy(pre.points),
        "pixel_index": torch.from_numpy(pre.pixel_index),
        "gt": torch.from_numpy(pre.gt),
    }
