"""Weight-free feature extractors: FPFH for the organized cloud, colour + texture for RGB.

They stand in for the pretrained backbones (DINO ViT-B/8 for RGB, Point-MAE for 3D) when no
weights are available, behind the same `FeatureExtractor` interface and on the same patch grid
(28 x 28 for 224 x 224 inputs, i.e. 8 x 8 pixel cells, the grid of a ViT-B/8). Both are
deterministic (no randomness, no atomics on CPU) and take well under a second per 224 x 224
sample on 2 CPU cores.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..ops import fpfh_organized
from .extractor import FeatureExtractor, masked_patch_mean

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FPFHExtractor(FeatureExtractor):
    """FPFH of the organized cloud, averaged over the valid pixels of each patch cell.

    Per valid pixel: normals by PCA of the `normals_k` nearest points (oriented to the camera at
    `viewpoint`), then the 33-bin FPFH of its `max_nn` nearest points (or the hybrid search with
    `radius`), as in "Back to the Feature" (Horwitz & Hoshen, 2023). With `normalize` the
    histograms are divided by 200, so each of the three 11-bin blocks sums to 1 at a pixel with
    neighbours. Cells without a valid pixel get zeros.

    Neighbourhoods are in 3D among the valid pixels of each image (not pixel windows). k-nearest
    neighbourhoods (the default, radius=None) adapt to the sampling density, so the defaults work
    in any unit; pass radii in the cloud's unit to fix the physical scale instead.
    """

    modality = "xyz"

    def __init__(self, patch_grid: Sequence[int] = (28, 28), *, max_nn: int = 40, radius: Optional[float] = None,
                 normals_k: int = 20, normals_radius: Optional[float] = None,
                 viewpoint: Sequence[float] = (0.0, 0.0, 0.0), normalize: bool = True):
        super().__init__()
        self.patch_grid = (int(patch_grid[0]), int(patch_grid[1]))
        self.max_nn, self.radius = int(max_nn), radius
        self.normals_k, self.normals_radius = int(normals_k), normals_radius
        self.viewpoint = tuple(float(v) for v in viewpoint)
        self.normalize = bool(normalize)
        self.out_channels = 33

    def pixel_features(self, x: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, 3, H, W) organized cloud -> (B, 33, H, W) per-pixel FPFH (zeros at invalid pixels)."""
        xyz = x.detach().permute(0, 2, 3, 1)
        feats = fpfh_organized(xyz, valid=valid, radius=self.radius, max_nn=self.max_nn,
                               normals_k=self.normals_k, normals_radius=self.normals_radius,
                               viewpoint=self.viewpoint)
        if self.normalize:
            feats = feats / 200.0
        return feats.permute(0, 3, 1, 2)

    def extract(self, x: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        if valid is None:
            valid = torch.isfinite(x).all(1) & (x != 0).any(1)
        with torch.no_grad():
            return masked_patch_mean(self.pixel_features(x, valid), valid, self.patch_grid)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> CIELAB (D65 white): L in [0, 100], a and b about [-110, 110]."""
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055).clamp_min(0) ** 2.4)
    m = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                      [0.2126729, 0.7151522, 0.0721750],
                      [0.0193339, 0.1191920, 0.9503041]], dtype=rgb.dtype, device=rgb.device)
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    white = torch.tensor([0.95047, 1.0, 1.08883], dtype=rgb.dtype, device=rgb.device)[None, :, None, None]
    t = xyz / white
    eps, kappa = 216 / 24389, 24389 / 27
    f = torch.where(t > eps, t.clamp_min(eps) ** (1 / 3), (kappa * t + 16) / 116)
    L = 116 * f[:, 1] - 16
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([L, a, b], 1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), reflect padding, radius 3 sigma."""
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    C = x.shape[1]
    pad_h = min(r, x.shape[2] - 1)
    pad_w = min(r, x.shape[3] - 1)
    y = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect" if pad_w > 0 else "replicate") if pad_w > 0 else x
    y = F.conv2d(y, k[r - pad_w:r + pad_w + 1].view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    y = F.pad(y, (0, 0, pad_h, pad_h), mode="reflect") if pad_h > 0 else y
    return F.conv2d(y, k[r - pad_h:r + pad_h + 1].view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical derivatives of (B, 1, H, W) (Sobel, replicate padding)."""
    kx = torch.tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=x.dtype, device=x.device) / 8
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(xp, kx.view(1, 1, 3, 3)), F.conv2d(xp, kx.t().contiguous().view(1, 1, 3, 3))


class HandcraftedRGBExtractor(FeatureExtractor):
    """Colour and texture statistics of each patch cell, in CIELAB (perceptually uniform).

    Channels (20, all scaled to about unit range; L, a, b divided by 100):

    * 0-2   mean L, a, b of the cell (after a sigma = 1 px blur against sensor noise);
    * 3-5   standard deviation of L, a, b within the cell (texture contrast);
    * 6-8   centre-surround contrast: cell mean minus the mean of the 5 x 5 cells around it
            (stains and discolourations stand out against their surroundings);
    * 9-16  gradient-orientation histogram of L (8 unsigned orientations, magnitude weighted,
            as in HOG): edges, scratches, print;
    * 17    mean gradient magnitude of the chroma (a, b): colour edges;
    * 18-19 mean |difference of Gaussians| of L at two scales (sigma 1-2 and 2-4 px): blob
            and fine-texture energy.

    Input: (B, 3, H, W) rgb, normalised with (`mean`, `std`) - ImageNet's by default, as the
    dataset pipeline delivers it; pass mean=None for rgb in [0, 1].
    """

    modality = "rgb"
    CHANNELS = ("L", "a", "b", "std_L", "std_a", "std_b", "ctx_L", "ctx_a", "ctx_b",
                *(f"hog_{i}" for i in range(8)), "chroma_grad", "dog_1_2", "dog_2_4")

    def __init__(self, patch_grid: Sequence[int] = (28, 28), *, mean: Optional[Sequence[float]] = IMAGENET_MEAN,
                 std: Optional[Sequence[float]] = IMAGENET_STD, context_cells: int = 5):
        super().__init__()
        self.patch_grid = (int(patch_grid[0]), int(patch_grid[1]))
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)
        if context_cells < 1 or context_cells % 2 == 0:
            raise ValueError(f"HandcraftedRGBExtractor: context_cells must be odd and >= 1, got {context_cells}")
        self.context_cells = int(context_cells)
        self.out_channels = len(self.CHANNELS)

    def _to_unit(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().float() if x.dtype != torch.float64 else x.detach()
        if self.mean is not None:
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[None, :, None, None]
            std = torch.tensor(self.std if self.std is not None else (1.0, 1.0, 1.0), dtype=x.dtype, device=x.device)
            x = x * std[None, :, None, None] + mean
        return x.clamp(0, 1)

    def extract(self, x: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        grid = self.patch_grid
        pool = F.adaptive_avg_pool2d
        with torch.no_grad():
            lab = gaussian_blur(srgb_to_lab(self._to_unit(x)) / 100.0, 1.0)
            mean = pool(lab, grid)
            std = (pool(lab * lab, grid) - mean * mean).clamp_min(0).sqrt()
            r = self.context_cells // 2
            ctx = F.avg_pool2d(F.pad(mean, (r, r, r, r), mode="replicate"), self.context_cells, stride=1)
            L = lab[:, :1]
            gx, gy = sobel(L)
            mag = (gx * gx + gy * gy).sqrt()
            theta = torch.atan2(gy, gx) % math.pi  # unsigned orientation in [0, pi)
            bins = (theta / math.pi * 8).long().clamp(0, 7)
            hog = torch.zeros(L.shape[0], 8, *L.shape[2:], dtype=L.dtype, device=L.device)
            hog.scatter_(1, bins, mag)
            hog = pool(hog, grid) * 4.0  # unit-ish scale: gradients of L/100 are small
            cx, cy = sobel(lab[:, 1:2])
            dx, dy = sobel(lab[:, 2:3])
            chroma = pool((cx * cx + cy * cy + dx * dx + dy * dy).sqrt(), grid) * 4.0
            g1, g2, g4 = gaussian_blur(L, 1.0), gaussian_blur(L, 2.0), gaussian_blur(L, 4.0)
            dog = pool(torch.cat([(g1 - g2).abs(), (g2 - g4).abs()], 1), grid) * 10.0
            return torch.cat([mean, std, mean - ctx, hog, chroma, dog], 1)
