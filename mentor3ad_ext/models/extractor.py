"""The interface every feature extractor of the model implements (pretrained or hand-crafted).

An extractor maps one modality of a batch to features on a patch grid:

    feats = extractor(batch)            # (B, out_channels, *patch_grid)

``batch`` is either a mapping with the dataset's keys - ``"rgb"`` (B, 3, H, W) float,
``"xyz"`` (B, 3, H, W) organized cloud with (0, 0, 0) holes, optional ``"valid"`` (B, H, W)
bool - from which the extractor reads its ``modality``, or that tensor itself. The model can
therefore pair any RGB extractor with any 3D extractor as long as their patch grids agree.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import torch


class FeatureExtractor(torch.nn.Module):
    """Base class. Subclasses set the attributes and implement `extract`.

    Attributes:
        modality: "rgb" or "xyz", the batch entry the extractor reads.
        out_channels: C of the output.
        patch_grid: (h, w) of the output.
        pretrained: whether the features come from learned weights (False: weight-free).
    """

    modality: str = ""
    out_channels: int = 0
    patch_grid: tuple[int, int] = (28, 28)
    pretrained: bool = False

    def extract(self, x: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch) -> torch.Tensor:
        name = type(self).__name__
        if isinstance(batch, Mapping):
            if self.modality not in batch:
                raise KeyError(f"{name}: the batch has no {self.modality!r} entry (keys: {sorted(batch)})")
            x, valid = batch[self.modality], batch.get("valid")
        else:
            x, valid = batch, None
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: {self.modality} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{name}: {self.modality} must have shape (B, 3, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: {self.modality} must be a floating-point tensor, got {x.dtype}")
        if valid is not None:
            if not isinstance(valid, torch.Tensor) or valid.dtype != torch.bool:
                raise TypeError(f"{name}: valid must be a bool tensor (B, H, W)")
            if valid.shape != (x.shape[0], *x.shape[2:]):
                raise ValueError(f"{name}: valid must have shape {(x.shape[0], *x.shape[2:])}, got {tuple(valid.shape)}")
        return self.extract(x, valid)

    def extra_repr(self) -> str:
        return f"modality={self.modality!r}, out_channels={self.out_channels}, patch_grid={self.patch_grid}"


def masked_patch_mean(values: torch.Tensor, mask: Optional[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, h, w): mean over the masked pixels of each cell (0 where none).

    Cells are those of adaptive average pooling (8 x 8 pixels for 224 -> 28).
    """
    pool = torch.nn.functional.adaptive_avg_pool2d
    if mask is None:
        return pool(values, grid)
    m = mask[:, None].to(values.dtype)
    num = pool(values * m, grid)
    den = pool(m, grid)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(values.dtype).tiny), num.new_zeros(()))


def patch_coverage(valid: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) bool -> (B, h, w): the fraction of valid pixels in each patch cell."""
    return torch.nn.functional.adaptive_avg_pool2d(valid[:, None].float(), grid)[:, 0]
