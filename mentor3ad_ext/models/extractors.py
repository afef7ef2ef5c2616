"""Frozen feature extractors for the model: the pretrained backbones, the cache protocol, the choice.

Every extractor implements the common interface of `models.extractor.FeatureExtractor`
(``extractor(batch) -> (B, out_channels, *patch_grid)``, ``modality`` "rgb" or "xyz").  The
model additionally needs to cache what is expensive, so this module adds a small protocol that
`extract_raw`, `raw_to_grid` and `extractor_identity` dispatch on:

* ``ext.extract_raw(batch) -> list[dict]``: per-sample raw outputs, the part worth caching (the
  backbone's work), float16 where they are features;
* ``ext.raw_to_grid(raws, batch) -> (B, C, h, w)``: the raw outputs on the patch grid (for
  Point-MAE: the 3-NN inverse squared-distance interpolation to every valid pixel, pooled to the
  grid, on every call: it is the cheap part);
* ``ext.identity() -> dict``: what determines the output (cache keys, checkpoint checks).

Extractors without these methods (the hand-crafted ones) are cached as their grid output.

Backbones with pretrained weights: the DINO ViT-B/8 (`ViTExtractor`, timm) and the Point-MAE
encoder (`PointMAEExtractor`).  Weights come from local files named by the user; without them
`build_extractors` falls back to the weight-free extractors of `models.handcrafted` and says so;
random weights only with ``random_init=True``.  ``ops="reference"`` runs the 3D path (grouping,
interpolation; normals and FPFH for the weight-free 3D features) on `mentor3ad_ext.reference`
instead of the compiled ops.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .extractor import FeatureExtractor
from .handcrafted import FPFHExtractor, HandcraftedRGBExtractor
from .pointmae import PointMAEEncoder, load_pointmae_state_dict
from .weights import WeightsError, check_state_dict, read_checkpoint

OPS = ("fast", "reference")


def get_ops(ops: str):
    """The module providing the 3D ops (group_points, interpolate_to_grid, ...) for ``ops``."""
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


def _simple(v):
    if isinstance(v, (int, float, str, bool, type(None))):
        return v
    if isinstance(v, (tuple, list)) and all(isinstance(x, (int, float, str, bool)) for x in v):
        return list(v)
    return None


def extractor_identity(ext: nn.Module) -> dict:
    """What determines an extractor's output (for cache keys and checkpoint checks)."""
    if hasattr(ext, "identity"):
        return ext.identity()
    params = {k: _simple(v) for k, v in vars(ext).items()
              if not k.startswith("_") and k != "training" and _simple(v) is not None}
    return {"name": type(ext).__name__, "out_channels": int(ext.out_channels),
            "patch_grid": list(ext.patch_grid), "params": params}


def extract_raw(ext: nn.Module, batch: dict) -> list[dict[str, torch.Tensor]]:
    """Per-sample cacheable outputs of ``ext`` for ``batch``."""
    if hasattr(ext, "extract_raw"):
        return ext.extract_raw(batch)
    with torch.no_grad():
        grid = ext(_on_device(batch, _device_of(ext)))
    if grid.ndim != 4 or grid.shape[1] != ext.out_channels:
        raise RuntimeError(f"extractor {type(ext).__name__} returned {tuple(grid.shape)}, expected "
                           f"(B, {ext.out_channels}, h, w)")
    return [{"grid": g.to(torch.float16).cpu()} for g in grid]


def raw_to_grid(ext: nn.Module, raws: Sequence[dict], batch: dict) -> torch.Tensor:
    """The cached outputs on the extractor's patch grid, ``(B, C, h, w)`` float32."""
    if hasattr(ext, "raw_to_grid"):
        return ext.raw_to_grid(raws, batch)
    return torch.stack([r["grid"] for r in raws]).float()


def _device_of(ext: nn.Module) -> torch.device:
    for t in list(ext.parameters()) + list(ext.buffers()):
        return t.device
    return torch.device(getattr(ext, "device", "cpu"))


def _on_device(batch: dict, device: torch.device) -> dict:
    keys = ("rgb", "xyz", "valid")
    return {k: (v.to(device) if k in keys and isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


class BackboneExtractor(FeatureExtractor):
    """A frozen pretrained backbone (always in eval mode) with the caching protocol."""

    pretrained = True
    name = ""

    def __init__(self, out_channels: int, patch_grid: tuple[int, int]):
        super().__init__()
        self.out_channels = int(out_channels)
        self.patch_grid = (int(patch_grid[0]), int(patch_grid[1]))

    def train(self, mode: bool = True):  # frozen: BatchNorm and dropout stay in eval mode
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return _device_of(self)

    def identity(self) -> dict:
        return {"name": self.name, "out_channels": self.out_channels,
                "patch_grid": list(self.patch_grid)}

    def extract_raw(self, batch: dict) -> list[dict[str, torch.Tensor]]:
        raise NotImplementedError

    def raw_to_grid(self, raws: Sequence[dict], batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def extract(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        batch = {self.modality: x}
        if valid is not None:
            batch["valid"] = valid
        return self.raw_to_grid(self.extract_raw(batch), batch)


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


class ViTExtractor(BackboneExtractor):
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
        state = None
        if weights is not None:  # read the file first: a bad file fails before the model is built
            state = _vit_state_from_checkpoint(read_checkpoint(weights, model_name))
            state = {k: v for k, v in state.items() if not k.startswith("head")}
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
        patch = model.patch_embed.patch_size[0]
        size = model.patch_embed.img_size[0]
        super().__init__(model.num_features, (size // patch, size // patch))
        self.name = model_name
        self.weights = None if weights is None else str(weights)
        if state is not None:
            check_state_dict(weights, model_name, model, state)
            model.load_state_dict(state, strict=True)
        self.model = model.eval().requires_grad_(False)

    def identity(self):
        ident = super().identity()
        ident["weights"] = file_stamp(self.weights) if self.weights else "random"
        return ident

    @torch.no_grad()
    def extract_raw(self, batch):
        rgb = batch["rgb"].to(self.device, torch.float32)
        tokens = self.model.forward_features(rgb)[:, self.model.num_prefix_tokens:]
        return [{"tokens": t.to(torch.float16).cpu()} for t in tokens]

    def raw_to_grid(self, raws, batch):
        h, w = self.patch_grid
        tokens = torch.stack([r["tokens"] for r in raws]).float()
        return tokens.transpose(1, 2).reshape(len(raws), self.out_channels, h, w)


# ---------------------------------------------------------------------------------------------
# Point-MAE
# ---------------------------------------------------------------------------------------------

class PointMAEExtractor(BackboneExtractor):
    """Point-MAE encoder on `group_points` groups; `interpolate_to_grid` to the patch grid.

    The cloud is the organized ``xyz`` of the batch: its valid pixels in row-major order (the
    data layer's ``points``).  Raw outputs: centers (G, 3) float32, group features (G, 1152)
    float16 and the number of valid centers.
    """

    modality, name = "xyz", "point_mae"

    def __init__(self, weights: str | os.PathLike | None = None, *, random_init: bool = False,
                 num_groups: int = 1024, group_size: int = 128, patch_grid=(28, 28), k: int = 3,
                 ops: str = "fast", encoder: PointMAEEncoder | None = None):
        if weights is None and not random_init:
            raise WeightsError("<none>", "Point-MAE needs a weight file (or random_init=True)")
        get_ops(ops)
        encoder = encoder if encoder is not None else PointMAEEncoder()
        if weights is not None:
            load_pointmae_state_dict(encoder, weights)
        super().__init__(encoder.out_channels, patch_grid)
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

    @staticmethod
    def _organized(batch, dev):
        xyz = batch["xyz"].to(dev, torch.float32)
        valid = batch.get("valid")
        valid = (xyz != 0).any(1) if valid is None else valid.to(dev)
        return xyz, valid

    @torch.no_grad()
    def extract_raw(self, batch):
        dev = self.device
        xyz, valid = self._organized(batch, dev)
        B = xyz.shape[0]
        flat = xyz.flatten(2).transpose(1, 2)                       # (B, H*W, 3)
        v = valid.flatten(1)
        order = torch.argsort((~v).to(torch.uint8), dim=1, stable=True)
        lengths = v.sum(1)
        P = max(int(lengths.max()) if B else 0, 1)
        points = flat.gather(1, order[:, :P, None].expand(-1, -1, 3))
        points = torch.where((torch.arange(P, device=dev)[None] < lengths[:, None])[..., None],
                             points, points.new_zeros(()))
        groups = self.ops.group_points(points, self.num_groups, self.group_size, lengths)
        neighborhoods, centers, idx = groups[0], groups[1], groups[2]
        feats = self.encoder(neighborhoods, centers)
        n_centers = (idx[:, :, 0] >= 0).sum(1)
        return [{"centers": c.float().cpu(), "features": f.to(torch.float16).cpu(),
                 "n_centers": n.cpu()} for c, f, n in zip(centers, feats, n_centers)]

    def raw_to_grid(self, raws, batch):
        dev = self.device
        centers = torch.stack([r["centers"] for r in raws]).to(dev)
        feats = torch.stack([r["features"] for r in raws]).to(dev).float()
        lengths = torch.stack([torch.as_tensor(r["n_centers"]) for r in raws]).to(dev, torch.int64)
        xyz, valid = self._organized(batch, dev)
        return self.ops.interpolate_to_grid(centers, feats, xyz.permute(0, 2, 3, 1).contiguous(),
                                            valid, k=self.k, out_size=self.patch_grid,
                                            lengths_centers=lengths, power=2.0)


# ---------------------------------------------------------------------------------------------
# Choosing the extractors
# ---------------------------------------------------------------------------------------------

def handcrafted_extractors(ops: str = "fast", grid_size: int = 28):
    """The weight-free extractors of `models.handcrafted` on a ``grid_size`` grid.

    With ``ops="reference"`` the FPFH's normals and histograms come from the plain references
    (`ReferenceFPFHExtractor`; very slow, for end-to-end speed comparisons on a few images).
    """
    get_ops(ops)
    grid = (grid_size, grid_size)
    xyz = FPFHExtractor(grid) if ops == "fast" else ReferenceFPFHExtractor(grid)
    return HandcraftedRGBExtractor(grid), xyz


class ReferenceFPFHExtractor(FPFHExtractor):
    """`FPFHExtractor` on `mentor3ad_ext.reference` (estimate_normals + fpfh, image by image)."""

    def identity(self) -> dict:
        ident = extractor_identity(FPFHExtractor(self.patch_grid, max_nn=self.max_nn,
                                                 normals_k=self.normals_k, viewpoint=self.viewpoint,
                                                 normalize=self.normalize))
        ident["params"]["ops"] = "reference"
        return ident

    def pixel_features(self, x, valid=None):
        from mentor3ad_ext import reference

        if self.radius is not None or self.normals_radius is not None:
            raise ValueError("ReferenceFPFHExtractor supports k-nearest neighbourhoods only")
        B, _, H, W = x.shape
        if valid is None:
            valid = torch.isfinite(x).all(1) & (x != 0).any(1)
        # in the input's dtype, like the fast path: FPFH's source-point choice compares two
        # cosines, so rounding differences between dtypes can move a pair to another bin
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        out = torch.zeros((B, H, W, 33), dtype=dtype)
        for b in range(B):
            pts = x[b].detach().permute(1, 2, 0)[valid[b]].to(dtype).cpu()[None]
            if pts.shape[1] == 0:
                continue
            nrm = reference.estimate_normals(pts, k=self.normals_k, viewpoint=self.viewpoint)
            out[b][valid[b].cpu()] = reference.fpfh(pts, nrm, max_nn=self.max_nn)[0].to(dtype)
        out = out.permute(0, 3, 1, 2).to(x.device, x.dtype)
        return out / 200.0 if self.normalize else out


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
                                patch_grid=(grid_size, grid_size))
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
