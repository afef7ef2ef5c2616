"""Mentor3AD: frozen extractors -> shared patch grid -> MFM / MGM -> VM.

`Mentor3AD` is the whole model for one object class.  Features come either straight from a
batch (`forward`, `predict`) or from cached raw extractor outputs (`grid_features` with
``raws``), which is how training and evaluation avoid re-running the backbones.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import Mentor3ADConfig, load_config
from .extractors import extract_raw, extractor_identity, raw_to_grid, to_shared_grid
from .heads import Mentor3ADHeads


def foreground_cells(valid: torch.Tensor, grid_size: int) -> torch.Tensor:
    """``(B, S, S)`` valid pixels -> ``(B, g, g)`` cells holding at least one valid pixel."""
    S = valid.shape[-1]
    if S % grid_size:
        raise ValueError(f"grid_size {grid_size} must divide the image size {S}")
    return F.max_pool2d(valid[:, None].float(), S // grid_size)[:, 0] > 0


class Mentor3AD(nn.Module):
    """The model of one class: two frozen extractors and the trainable heads."""

    def __init__(self, config: Mentor3ADConfig | str | None, rgb_extractor: nn.Module,
                 xyz_extractor: nn.Module):
        super().__init__()
        self.config = load_config(config)
        if rgb_extractor.modality != "rgb" or xyz_extractor.modality != "xyz":
            raise ValueError(f"expected an rgb and a 3d extractor, got {rgb_extractor.modality!r} "
                             f"and {xyz_extractor.modality!r}")
        self.rgb_extractor, self.xyz_extractor = rgb_extractor, xyz_extractor
        # Initial weights from the config's seed, not from whatever the global RNG holds: the
        # same config trains the same model in every process, first run or not (the first
        # training of a process used to differ from every later one). fork_rng leaves the
        # caller's RNG state untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.train.seed)
            self.heads = Mentor3ADHeads(self.config, rgb_extractor.out_channels,
                                        xyz_extractor.out_channels)

    @property
    def extractors(self) -> tuple[nn.Module, nn.Module]:
        return self.rgb_extractor, self.xyz_extractor

    def extractor_identity(self) -> dict:
        return {"rgb": extractor_identity(self.rgb_extractor),
                "3d": extractor_identity(self.xyz_extractor)}

    def grid_features(self, batch: dict, raws: tuple[Sequence[dict], Sequence[dict]] | None = None):
        """``(F_rgb (B, C_r, g, g), F_3d (B, C_x, g, g), foreground (B, g, g))`` on the shared grid."""
        g = self.config.grid_size
        if raws is None:
            raws = (extract_raw(self.rgb_extractor, batch), extract_raw(self.xyz_extractor, batch))
        dev = self.heads.rgb_mean.device
        f_r = to_shared_grid(raw_to_grid(self.rgb_extractor, raws[0], batch).to(dev).float(), g)
        f_x = to_shared_grid(raw_to_grid(self.xyz_extractor, raws[1], batch).to(dev).float(), g)
        fg = foreground_cells(batch["valid"].to(dev), g)
        return f_r, f_x, fg

    @torch.no_grad()
    def predict_from_grids(self, f_r, f_x, fg, valid, vm=None) -> dict:
        """Anomaly maps and scores from grid features; ``vm`` overrides the voting module."""
        vm = self.heads.vm if vm is None else vm
        patch = self.heads.patch_maps(f_r, f_x, fg)
        final, score, maps = vm(patch, valid.to(f_r.device))
        return {"map": final, "score": score, "maps": maps}

    @torch.no_grad()
    def predict(self, batch: dict, raws=None, vm=None) -> dict:
        """``{"map": (B, S, S), "score": (B,), "maps": {name: (B, S, S)}}`` for a batch."""
        self.heads.eval()
        f_r, f_x, fg = self.grid_features(batch, raws)
        return self.predict_from_grids(f_r, f_x, fg, batch["valid"], vm)

    def forward(self, batch: dict) -> dict:
        return self.predict(batch)
