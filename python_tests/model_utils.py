"""Small deterministic extractors and data for the model tests (no weights, fast on 2 cores).

`PatchRGB`: per 8 x 8 cell the mean and std colour and a fixed random projection of the cell's
pixels.  `PatchXYZ`: per cell the valid pixels' coordinates relative to the cell's mean point
(local shape), projected the same way, plus the fraction of valid pixels.  Both are plain
`FeatureExtractor`s on a 28 x 28 grid; they make the planted synthetic defects visible enough
for end-to-end checks of the pipeline.
"""
from __future__ import annotations

import torch

from mentor3ad_ext.models.extractors import BackboneExtractor, _on_device


def _cells(x: torch.Tensor, cell: int) -> torch.Tensor:
    """(B, C, S, S) -> (B, g, g, cell*cell*C)."""
    B, C, S, _ = x.shape
    g = S // cell
    return x.reshape(B, C, g, cell, g, cell).permute(0, 2, 4, 3, 5, 1).reshape(B, g, g, cell * cell * C)


class _PatchExtractor(BackboneExtractor):
    cell = 8

    def __init__(self, proj_dim: int, extra: int, in_channels: int = 3, seed: int = 0):
        super().__init__(proj_dim + extra, (28, 28))
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", torch.randn(self.cell * self.cell * in_channels, proj_dim,
                                                 generator=g) / (self.cell * 3) ** 0.5)
        self.calls = 0

    def identity(self):
        return {**super().identity(), "seed": 0}

    def extract_raw(self, batch):
        # as the real extractors do: the batch (CPU, from the loader) to this extractor's device,
        # the cacheable outputs back on the CPU
        self.calls += 1
        grid = self.compute(_on_device(batch, self.proj.device))
        return [{"grid": g.to(torch.float16).cpu()} for g in grid]

    def raw_to_grid(self, raws, batch):
        return torch.stack([r["grid"] for r in raws]).float()


class PatchRGB(_PatchExtractor):
    modality, name = "rgb", "test_patch_rgb"

    def __init__(self):
        super().__init__(24, 6)

    def compute(self, batch):
        rgb = batch["rgb"].float()
        cells = _cells(rgb, self.cell)                      # (B, g, g, 192)
        pix = cells.reshape(*cells.shape[:3], -1, 3)
        feats = [pix.mean(3), pix.std(3), cells @ self.proj]
        return torch.cat(feats, -1).permute(0, 3, 1, 2).contiguous()


class PatchXYZ(_PatchExtractor):
    modality, name = "xyz", "test_patch_xyz"

    def __init__(self):
        super().__init__(24, 1)

    def compute(self, batch):
        xyz = batch["xyz"].float()
        valid = batch["valid"].float()[:, None]
        cells = _cells(xyz * 1000.0, self.cell)              # millimetres
        vcell = _cells(valid, self.cell)                     # (B, g, g, 64)
        pts = cells.reshape(*cells.shape[:3], -1, 3)
        n = vcell.sum(-1, keepdim=True).clamp_min(1)
        mean = (pts * vcell[..., None]).sum(3) / n
        rel = (pts - mean[..., None, :]) * vcell[..., None]
        proj = rel.reshape(*rel.shape[:3], -1) @ self.proj
        frac = vcell.mean(-1, keepdim=True)
        return torch.cat([proj, frac], -1).permute(0, 3, 1, 2).contiguous()


def patch_extractors():
    return PatchRGB(), PatchXYZ()


def tiny_config(name: str = "mentor3ad", **changes):
    from mentor3ad_ext.models.config import get_preset

    base = get_preset(name)
    train = {"epochs": 3, "mfm_epochs": 2, "batch_size": 4, **changes.pop("train", {})}
    sizes = {"proj_hidden": 32, "proj_dim": 16, "mentor_dim": 8, "mapper_hidden": 48, **changes}
    return base.replace(train=train, **sizes)


def make_synth(root, classes=("cookie",), n_train=4, n_val=1, n_test=1, size=64, seed=0,
               defects=None):
    from mentor3ad_ext.data import SynthConfig, generate_synthetic_dataset

    kw = {} if defects is None else {"defects": tuple(defects)}
    cfg = SynthConfig(classes=tuple(classes), n_train=n_train, n_val=n_val, n_test=n_test,
                      size=size, seed=seed, **kw)
    generate_synthetic_dataset(root, cfg)
    return root
