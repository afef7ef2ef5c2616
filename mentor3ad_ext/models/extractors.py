"""Frozen feature extractors behind one interface, and the registry that picks them.

Every extractor is an ``nn.Module`` with

* ``modality`` ("rgb" or "3d"), ``out_channels`` and ``grid_size`` ``(h, w)``;
* ``extract(batch) -> list[dict]``: per-sample raw outputs, the part worth caching (the
  backbone's work), stored in float16 where they are features;
* ``to_grid(raws, batch) -> (B, C, h, w)``: the raw outputs on the patch grid (for Point-MAE:
  the 3-NN inverse squared-distance interpolation to every valid pixel, pooled to the grid);
* ``__call__(batch) -> (B, C, h, w)``: both;
* ``identity() -> dict``: what determines the output (cache keys, checkpoint compatibility).

Backbones with pretrained weights: the DINO ViT-B/8 (`ViTExtractor`, timm) and the Point-MAE
encoder (`PointMAEExtractor`).  Weights come from local files named by the user; without them
`build_extractors` falls back to the weight-free extractors of `models.handcrafted` and says so;
random weights only with ``random_init=True``.  ``ops="reference"`` runs the 3D path (grouping,
interpolation) on `mentor3ad_ext.reference` instead of the compiled ops.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .pointmae import PointMAEEncoder, load_pointmae_state_dict
from .weights import WeightsError, check_state_dict, read_checkpoint

OPS = ("fast", "reference")


def get_ops(ops: str):
    """The module providing ``group_points`` and ``interpolate_to_grid`` for ``ops``."""
    if ops == "fast":
        import mentor3ad_ext

        return mentor3ad_ext
    if ops == "reference":
        from mentor3ad_ext import reference

        return reference
    raise ValueError(f"ops must be one of {OPS}, got {ops!r}")


def file_stamp(path: str | os.PathLike | None) -> dict | None:
    if path is None:
        return None
    p = Path(path).absolute()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class FeatureExtractor(nn.Module):
    """Base class: a frozen module in eval mode (see the module docstring)."""

    modality: str = ""
    name: str = ""

    def __init__(self, out_channels: int, grid_size: tuple[int, int]):
        super().__init__()
        self.out_channels = int(out_channels)
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))

    def train(self, mode: bool = True):  # frozen: always eval (BatchNorm, dropout)
        return super().train(False)

    def identity(self) -> dict:
        return {"name": self.name, "out_channels": self.out_channels,
                "grid_size": list(self.grid_size)}

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    def extract(self, batch: dict) -> list[dict[str, torch.Tensor]]:
        raise NotImplementedError

    def to_grid(self, raws: Sequence[dict[str, torch.Tensor]], batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: dict) -> torch.Tensor:
        return self.to_grid(self.extract(batch), batch)


class GridExtractor(FeatureExtractor):
    """Wraps any callable ``fn(batch) -> (B, C, h, w)`` (e.g. the hand-crafted extractors)."""

    def __init__(self, fn: Callable[[dict], torch.Tensor], modality: str, name: str | None = None,
                 out_channels: int | None = None, grid_size=None, params: dict | None = None):
        oc = out_channels if out_channels is not None else getattr(fn, "out_channels")
        gs = grid_size if grid_size is not None else _grid_of(fn)
        super().__init__(oc, gs)
        self.fn = fn
        self.modality = modality
        self.name = name or type(fn).__name__
        self.params = dict(params or {})
        if isinstance(fn, nn.Module):
            fn.eval()
            for p in fn.parameters():
                p.requires_grad_(False)

    def identity(self) -> dict:
        ident = super().identity()
        ident["params"] = {k: (v if isinstance(v, (int, float, str, bool, type(None), list))
                               else repr(v)) for k, v in self.params.items()}
        return ident

    @property
    def device(self) -> torch.device:
        if isinstance(self.fn, nn.Module):
            for t in list(self.fn.parameters()) + list(self.fn.buffers()):
                return t.device
        return torch.device(getattr(self.fn, "device", "cpu"))

    @torch.no_grad()
    def extract(self, batch):
        grid = self.fn(batch)
        if grid.ndim != 4 or grid.shape[1] != self.out_channels:
            raise RuntimeError(f"extractor {self.name} returned {tuple(grid.shape)}, expected "
                               f"(B, {self.out_channels}, h, w)")
        return [{"grid": g.to(torch.float16).cpu()} for g in grid]

    def to_grid(self, raws, batch):
        return torch.stack([r["grid"] for r in raws]).float()


def _grid_of(fn) -> tuple[int, int]:
    for attr in ("grid_size", "patch_grid", "grid", "out_size"):
        value = getattr(fn, attr, None)
        if value is not None:
            return (value, value) if isinstance(value, int) else tuple(value)
    raise AttributeError(f"{type(fn).__name__} has no grid_size/patch_grid attribute")


# ---------------------------------------------------------------------------------------------
# DINO ViT-B/8 (timm)
# ---------------------------------------------------------------------------------------------

VIT_MODEL = "vit_base_patch8_224.dino"


def _vit_state_from_checkpoint(ckpt) -> dict[str, torch.Tensor]:
    """timm / HF state dicts as they are; the original DINO checkpoints unwrapped."""
    state = ckpt
    if isinstance(ckpt, dict):
        for key in ("teacher", "model", "state_dict"):
            if isinstance(ckpt.get(key), dict):
                state = ckpt[key]
                break
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


class ViTExtractor(FeatureExtractor):
    """timm ``vit_base_patch8_224.dino``: 12 blocks and the final norm, CLS dropped -> 28x28x768."""

    modality, name = "rgb", "vit_base_patch8_224.dino"

    def __init__(self, weights: str | os.PathLike | None = None, *, random_init: bool = False,
                 model_name: str = VIT_MODEL):
        try:
            import timm
        except ImportError:
            raise ImportError("the ViT extractor needs timm: pip install timm") from None
        if weights is None and not random_init:
            raise WeightsError("<none>", f"{model_name} needs a weight file (or random_init=True)")
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
        patch = model.patch_embed.patch_size[0]
        size = model.patch_embed.img_size[0]
        super().__init__(model.num_features, (size // patch, size // patch))
        self.name = model_name
        self.weights = None if weights is None else str(weights)
        if weights is not None:
            state = _vit_state_from_checkpoint(read_checkpoint(weights, model_name))
            state = {k: v for k, v in state.items() if not k.startswith("head")}
            check_state_dict(weights, model_name, model, state)
            model.load_state_dict(state, strict=True)
        self.model = model.eval().requires_grad_(False)

    def identity(self):
        ident = super().identity()
        ident["weights"] = file_stamp(self.weights) if self.weights else "random"
        return ident

    @torch.no_grad()
    def extract(self, batch):
        rgb = batch["rgb"].to(self.device, torch.float32)
        tokens = self.model.forward_features(rgb)[:, self.model.num_prefix_tokens:]
        return [{"tokens": t.to(torch.float16).cpu()} for t in tokens]

    def to_grid(self, raws, batch):
        h, w = self.grid_size
        tokens = torch.stack([r["tokens"] for r in raws]).float()
        return tokens.transpose(1, 2).reshape(len(raws), self.out_channels, h, w)


# ---------------------------------------------------------------------------------------------
# Point-MAE
# ---------------------------------------------------------------------------------------------

class PointMAEExtractor(FeatureExtractor):
    """Point-MAE encoder on `group_points` groups; `interpolate_to_grid` to the patch grid."""

    modality, name = "3d", "point_mae"

    def __init__(self, weights: str | os.PathLike | None = None, *, random_init: bool = False,
                 num_groups: int = 1024, group_size: int = 128, grid_size=(28, 28), k: int = 3,
                 ops: str = "fast", encoder: PointMAEEncoder | None = None):
        if weights is None and not random_init:
            raise WeightsError("<none>", "Point-MAE needs a weight file (or random_init=True)")
        get_ops(ops)
        encoder = encoder if encoder is not None else PointMAEEncoder()
        if weights is not None:
            load_pointmae_state_dict(encoder, weights)
        super().__init__(encoder.out_channels, grid_size)
        self.encoder = encoder.eval().requires_grad_(False)
        self.weights = None if weights is None else str(weights)
        self.num_groups, self.group_size, self.k = num_groups, group_size, k
        self.ops_name = ops
        self.ops = get_ops(ops)

    def identity(self):
        ident = super().identity()
        ident.update(weights=file_stamp(self.weights) if self.weights else "random",
                     num_groups=self.num_groups, group_size=self.group_size, k=self.k)
        return ident

    @torch.no_grad()
    def extract(self, batch):
        dev = self.device
        points = batch["points"].to(dev, torch.float32)
        lengths = batch["lengths"].to(dev)
        groups = self.ops.group_points(points, self.num_groups, self.group_size, lengths)
        neighborhoods, centers, idx = groups[0], groups[1], groups[2]
        feats = self.encoder(neighborhoods, centers)
        n_centers = (idx[:, :, 0] >= 0).sum(1)
        return [{"centers": c.float().cpu(), "features": f.to(torch.float16).cpu(),
                 "n_centers": n.cpu()} for c, f, n in zip(centers, feats, n_centers)]

    def to_grid(self, raws, batch):
        dev = self.device
        centers = torch.stack([r["centers"] for r in raws]).to(dev)
        feats = torch.stack([r["features"] for r in raws]).to(dev).float()
        lengths = torch.stack([torch.as_tensor(r["n_centers"]) for r in raws]).to(dev, torch.int64)
        xyz = batch["xyz"].to(dev, torch.float32).permute(0, 2, 3, 1).contiguous()
        valid = batch["valid"].to(dev)
        return self.ops.interpolate_to_grid(centers, feats, xyz, valid, k=self.k,
                                            out_size=self.grid_size, lengths_centers=lengths,
                                            power=2.0)


# ---------------------------------------------------------------------------------------------
# Choosing the extractors
# ---------------------------------------------------------------------------------------------

def handcrafted_extractors(ops: str = "fast", grid_size: int = 28) -> tuple[FeatureExtractor, FeatureExtractor]:
    """The weight-free extractors of `models.handcrafted`, wrapped in this interface."""
    try:
        from . import handcrafted
    except ImportError as err:
        raise ImportError("the weight-free extractors (mentor3ad_ext.models.handcrafted) are not "
                          f"available ({err}); pass --rgb-weights and --pointmae-weights, or "
                          "random_init=True") from None
    return _wrap_handcrafted(handcrafted, ops, grid_size)


def _wrap_handcrafted(module, ops: str, grid_size: int):
    builders = getattr(module, "build_handcrafted_extractors", None)
    if builders is not None:
        rgb, xyz = builders(ops=ops, grid_size=grid_size)
    else:
        rgb = module.HandcraftedRGBExtractor()
        xyz = module.FPFHExtractor()
    out = []
    for fn, modality in ((rgb, "rgb"), (xyz, "3d")):
        if isinstance(fn, FeatureExtractor):
            out.append(fn)
        else:
            params = getattr(fn, "config", None)
            params = vars(params) if hasattr(params, "__dict__") else {"config": params}
            out.append(GridExtractor(fn, modality, params=params))
    return out[0], out[1]


def build_extractors(rgb_weights=None, pointmae_weights=None, *, random_init: bool = False,
                     ops: str = "fast", grid_size: int = 28, log: Callable[[str], None] | None = None
                     ) -> tuple[FeatureExtractor, FeatureExtractor]:
    """The RGB and 3D extractors for the given weight files (see the module docstring).

    With neither weight file and ``random_init=False``, both are the weight-free extractors;
    with one file, the other modality uses random weights only if ``random_init`` and the
    weight-free extractor otherwise.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    get_ops(ops)  # validate early
    need_handcrafted = (rgb_weights is None or pointmae_weights is None) and not random_init
    hand = handcrafted_extractors(ops, grid_size) if need_handcrafted else (None, None)
    if rgb_weights is not None or random_init:
        rgb = ViTExtractor(rgb_weights, random_init=random_init)
        if rgb_weights is None:
            log("warning: RGB extractor: DINO ViT-B/8 with RANDOM weights (random_init); "
                "features are not meaningful for anomaly detection")
    else:
        rgb = hand[0]
        log("note: no --rgb-weights given: using the weight-free hand-crafted RGB features")
    if pointmae_weights is not None or random_init:
        xyz = PointMAEExtractor(pointmae_weights, random_init=random_init, ops=ops,
                                grid_size=(grid_size, grid_size))
        if pointmae_weights is None:
            log("warning: 3D extractor: Point-MAE with RANDOM weights (random_init); features "
                "are not meaningful for anomaly detection")
    else:
        xyz = hand[1]
        log("note: no --pointmae-weights given: using the weight-free FPFH 3D features")
    return rgb, xyz


def to_shared_grid(grid: torch.Tensor, size: int) -> torch.Tensor:
    """Bring ``(B, C, h, w)`` features to ``size x size``: average pooling when it divides,
    bilinear interpolation otherwise."""
    h, w = grid.shape[-2:]
    if (h, w) == (size, size):
        return grid
    if h % size == 0 and w % size == 0:
        return F.avg_pool2d(grid, (h // size, w // size))
    return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
