"""The trainable heads of Mentor3AD: MFM (mentor fusion), MGM (mentor guidance), VM (vote).

All heads work on *patch rows*: the features of the foreground cells of the shared patch grid,
``(N, C)``.  `Mentor3ADHeads` ties them together and turns grid features ``(B, C, h, w)`` into
per-cell distance maps; `VotingModule` turns those into the final anomaly map and score.

* MFM: ``phi_r = LN-Linear(C_r, 512)-GELU-Linear(512, 256)``, ``phi_x`` likewise on the 3D
  features; mentor ``M = MLP([phi_r/|phi_r| ; phi_x/|phi_x|]) -> mentor_dim``.  Trained with a
  patch-wise InfoNCE between the normalised projections (M3DM's fusion loss, both directions,
  patches subsampled to keep the logits matrix bounded) and a bottleneck reconstruction: a
  small decoder must rebuild both modalities' (standardised) features from M, which is what
  makes M a compact joint code of *normal* appearance (and what trains the mentor MLP at all
  when the reconstruction loss is stopped from reaching the MFM).
* MGM: CFM's two mappers (3-layer GELU MLPs, hidden 960), conditioned on the mentor by
  concatenation ``G([F ; M])`` or FiLM; loss ``1 - cos`` per direction on foreground patches.
  Shortcut guards: mentor dropout (per patch) while training, stop-gradient into the MFM.
* VM: candidate maps (3D / RGB reconstruction distance, their product - CFM's map, taken as its
  square root: the same ranking on a distance's scale - and the mentor's cross-modal
  disagreement ``1 - cos(phi_r, phi_x)``) upsampled to the image, masked to the object,
  Gaussian-smoothed, normalised with statistics of normal pixels and voted (soft: mean; hard:
  number of maps above their normal quantile times the mean).  Image score: the same vote over
  the maps' normalised maxima.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import MAPS, Mentor3ADConfig


def mlp3(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """CFM's mapper: Linear-GELU-Linear-GELU-Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                         nn.GELU(), nn.Linear(hidden, out_dim))


class Projection(nn.Sequential):
    """LN-Linear(C, hidden)-GELU-Linear(hidden, dim)."""

    def __init__(self, in_dim: int, hidden: int, dim: int):
        super().__init__(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(),
                         nn.Linear(hidden, dim))


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float, max_rows: int,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Symmetric patch-wise InfoNCE: row i of ``a`` and row i of ``b`` are the positive pair.

    At most ``max_rows`` rows (a random subset) enter the ``(n, n)`` logits matrix.
    """
    n = a.shape[0]
    if n > max_rows:
        keep = torch.randperm(n, generator=generator, device="cpu")[:max_rows].to(a.device)
        a, b = a[keep], b[keep]
        n = max_rows
    if n < 2:
        return a.sum() * 0.0
    a = F.normalize(a.float(), dim=1)
    b = F.normalize(b.float(), dim=1)
    logits = a @ b.t() / temperature
    target = torch.arange(n, device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``1 - cos(pred, target)``."""
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    return (1.0 - F.cosine_similarity(pred.float(), target.float(), dim=1)).mean()


class MFM(nn.Module):
    """Mentor fusion module."""

    def __init__(self, rgb_dim: int, xyz_dim: int, config: Mentor3ADConfig):
        super().__init__()
        c = config
        self.phi_r = Projection(rgb_dim, c.proj_hidden, c.proj_dim)
        self.phi_x = Projection(xyz_dim, c.proj_hidden, c.proj_dim)
        self.fuse = nn.Sequential(nn.Linear(2 * c.proj_dim, c.proj_dim), nn.GELU(),
                                  nn.Linear(c.proj_dim, c.mentor_dim))
        self.decoder = nn.Sequential(nn.Linear(c.mentor_dim, c.proj_hidden), nn.GELU(),
                                     nn.Linear(c.proj_hidden, rgb_dim + xyz_dim))
        self.rgb_dim = rgb_dim

    def forward(self, f_r: torch.Tensor, f_x: torch.Tensor):
        """Rows ``(N, C_r)``, ``(N, C_x)`` -> ``(z_r, z_x, mentor)``."""
        z_r, z_x = self.phi_r(f_r), self.phi_x(f_x)
        m = self.fuse(torch.cat([F.normalize(z_r, dim=1), F.normalize(z_x, dim=1)], dim=1))
        return z_r, z_x, m

    def losses(self, f_r, f_x, config: Mentor3ADConfig, generator=None) -> dict[str, torch.Tensor]:
        z_r, z_x, m = self(f_r, f_x)
        rec = self.decoder(m)
        out = {"mentor_rec": cosine_loss(rec[:, : self.rgb_dim], f_r)
               + cosine_loss(rec[:, self.rgb_dim:], f_x)}
        if config.contrastive:
            out["infonce"] = info_nce(z_r, z_x, config.temperature,
                                      config.train.max_contrastive_patches, generator)
        return out

    @staticmethod
    def disagreement(z_r: torch.Tensor, z_x: torch.Tensor) -> torch.Tensor:
        return 1.0 - F.cosine_similarity(z_r, z_x, dim=1)


class Mapper(nn.Module):
    """A cross-modal mapper, optionally conditioned on the mentor (concat or FiLM)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, cond_dim: int = 0,
                 conditioning: str = "concat"):
        super().__init__()
        self.cond_dim, self.conditioning = cond_dim, conditioning
        if cond_dim and conditioning == "film":
            self.l1, self.l2 = nn.Linear(in_dim, hidden), nn.Linear(hidden, hidden)
            self.l3 = nn.Linear(hidden, out_dim)
            self.film = nn.Linear(cond_dim, 4 * hidden)
            nn.init.zeros_(self.film.weight)  # starts as the unconditioned mapper
            nn.init.zeros_(self.film.bias)
        else:
            self.net = mlp3(in_dim + cond_dim, hidden, out_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if not self.cond_dim:
            return self.net(x)
        if cond is None:
            raise ValueError("this mapper is conditioned on the mentor: pass cond")
        if self.conditioning == "film":
            g1, b1, g2, b2 = self.film(cond).chunk(4, dim=1)
            h = F.gelu(self.l1(x) * (1 + g1) + b1)
            h = F.gelu(self.l2(h) * (1 + g2) + b2)
            return self.l3(h)
        return self.net(torch.cat([x, cond], dim=1))


class MGM(nn.Module):
    """Mentor guidance module: x3d_hat = G_2to3([F_rgb ; M]), xrgb_hat = G_3to2([F_3d ; M])."""

    def __init__(self, rgb_dim: int, xyz_dim: int, config: Mentor3ADConfig):
        super().__init__()
        cond = config.mentor_dim if config.use_mentor else 0
        self.g_2to3 = Mapper(rgb_dim, xyz_dim, config.mapper_hidden, cond, config.conditioning)
        self.g_3to2 = Mapper(xyz_dim, rgb_dim, config.mapper_hidden, cond, config.conditioning)

    def forward(self, f_r, f_x, mentor=None):
        return self.g_2to3(f_r, mentor), self.g_3to2(f_x, mentor)


def _distance(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(pred, target, dim=1)
    return (pred - target).norm(dim=1)


class Mentor3ADHeads(nn.Module):
    """MFM + MGM + VM for given extractor channel counts.

    Grid features are ``(B, C, h, w)`` with a foreground mask ``(B, h, w)``; only foreground
    cells are used (rows).  ``standardize`` buffers hold per-channel statistics of the training
    features (`fit_standardization`).
    """

    def __init__(self, config: Mentor3ADConfig, rgb_dim: int, xyz_dim: int):
        super().__init__()
        self.config = config
        self.rgb_dim, self.xyz_dim = int(rgb_dim), int(xyz_dim)
        self.mfm = MFM(rgb_dim, xyz_dim, config) if config.use_mentor else None
        self.mgm = MGM(rgb_dim, xyz_dim, config)
        self.vm = VotingModule(config)
        for name, dim in (("rgb", rgb_dim), ("xyz", xyz_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    # -- inputs ------------------------------------------------------------------------------
    @torch.no_grad()
    def fit_standardization(self, f_r: torch.Tensor, f_x: torch.Tensor) -> None:
        """Per-channel mean/std of training rows (no-op when the config does not standardise)."""
        if not self.config.standardize:
            return
        for name, rows in (("rgb", f_r), ("xyz", f_x)):
            rows = rows.double()
            getattr(self, f"{name}_mean").copy_(rows.mean(0))
            std = rows.std(0, unbiased=False) if rows.shape[0] > 1 else torch.ones_like(rows[0])
            getattr(self, f"{name}_std").copy_(std.clamp_min(1e-6))

    def standardize(self, f_r: torch.Tensor, f_x: torch.Tensor):
        f_r = (f_r.float() - self.rgb_mean) / self.rgb_std
        f_x = (f_x.float() - self.xyz_mean) / self.xyz_std
        return f_r, f_x

    # -- training ----------------------------------------------------------------------------
    def mentor(self, f_r, f_x):
        """``(z_r, z_x, M)`` of standardised rows, or Nones without a mentor."""
        if self.mfm is None:
            return None, None, None
        return self.mfm(f_r, f_x)

    def losses(self, f_r: torch.Tensor, f_x: torch.Tensor, stage: str,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Training losses on standardised foreground rows for ``stage`` in mfm/mgm/joint."""
        c = self.config
        out: dict[str, torch.Tensor] = {}
        if stage in ("mfm", "joint") and self.mfm is not None:
            out.update(self.mfm.losses(f_r, f_x, c, generator))
        if stage in ("mgm", "joint"):
            mentor = None
            if self.mfm is not None:
                if stage == "mgm" or c.stop_gradient:
                    with torch.no_grad():
                        mentor = self.mfm(f_r, f_x)[2]
                else:
                    mentor = self.mfm(f_r, f_x)[2]
                if self.training and c.mentor_dropout > 0:
                    keep = torch.rand(mentor.shape[0], 1, generator=generator).to(mentor.device)
                    mentor = mentor * (keep >= c.mentor_dropout).to(mentor.dtype)
            x_hat, r_hat = self.mgm(f_r, f_x, mentor)
            out["rec_3d"] = cosine_loss(x_hat, f_x)
            out["rec_rgb"] = cosine_loss(r_hat, f_r)
        return out

    # -- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def patch_maps(self, grid_r: torch.Tensor, grid_x: torch.Tensor, fg: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
        """Per-cell distances ``{"rgb", "3d", "mentor"}`` of shape ``(B, h, w)``; 0 off the object."""
        B, _, h, w = grid_r.shape
        rows_r = grid_r.permute(0, 2, 3, 1)[fg]
        rows_x = grid_x.permute(0, 2, 3, 1)[fg]
        f_r, f_x = self.standardize(rows_r, rows_x)
        z_r, z_x, mentor = self.mentor(f_r, f_x)
        x_hat, r_hat = self.mgm(f_r, f_x, mentor)
        kind = self.config.distance
        values = {"3d": _distance(x_hat.float(), f_x, kind),
                  "rgb": _distance(r_hat.float(), f_r, kind)}
        if z_r is not None:
            values["mentor"] = MFM.disagreement(z_r.float(), z_x.float())
        out = {}
        for name, v in values.items():
            full = grid_r.new_zeros((B, h, w), dtype=torch.float32)
            full[fg] = v.float()
            out[name] = full
        return out


# ---------------------------------------------------------------------------------------------
# Voting module
# ---------------------------------------------------------------------------------------------

def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    radius = max(1, int(truncate * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).float()


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of ``(B, H, W)`` maps (reflect padding, scipy's truncate=4)."""
    if sigma <= 0:
        return maps
    k = gaussian_kernel1d(sigma).to(maps.device, maps.dtype)
    r = k.numel() // 2
    x = maps[:, None]
    pad_mode = "reflect" if min(maps.shape[-2:]) > r else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=pad_mode), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode=pad_mode), k.view(1, 1, -1, 1))
    return x[:, 0]


class VotingModule(nn.Module):
    """Candidate maps -> normalised, smoothed maps -> vote -> anomaly map and image score.

    Statistics of normal data (`fit`): per map, the mean and standard deviation of the smoothed
    map over the object pixels of normal images, the ``hard_quantile`` of the normalised normal
    pixels (hard vote threshold) and of the normal images' normalised maxima (image-level hard
    vote).  Stored as buffers for every candidate map, so that a trained model can be evaluated
    with any subset of maps and either vote (`with_vote`).
    """

    def __init__(self, config: Mentor3ADConfig):
        super().__init__()
        self.config = config
        n = len(MAPS)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.register_buffer("pixel_threshold", torch.full((n,), math.inf))
        self.register_buffer("image_threshold", torch.full((n,), math.inf))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def with_vote(self, config: Mentor3ADConfig) -> "VotingModule":
        """A copy voting as ``config`` says, with the same normal statistics."""
        vm = VotingModule(config)
        vm.load_state_dict(self.state_dict())
        return vm.to(self.mean.device)

    def candidate_maps(self, patch_maps: dict[str, torch.Tensor], valid: torch.Tensor,
                       names=None) -> dict[str, torch.Tensor]:
        """Raw smoothed maps at image resolution ``(B, S, S)`` for ``names`` (default: config's)."""
        names = self.config.maps if names is None else names
        size = valid.shape[-2:]
        mask = valid.to(torch.float32)
        up = {}

        def upsampled(key):
            if key not in up:
                up[key] = F.interpolate(patch_maps[key][:, None], size=size, mode="bilinear",
                                        align_corners=False)[:, 0] * mask
            return up[key]

        out = {}
        for name in names:
            if name == "product":
                # CFM's map (the product of the distances, smoothed), as its square root: the
                # same ranking, on the scale of a distance, so that it does not swamp the vote
                prod = gaussian_blur(upsampled("rgb") * upsampled("3d"), self.config.sigma)
                out[name] = prod.clamp_min(0).sqrt()
                continue
            if name not in patch_maps:
                raise ValueError(f"map {name!r} needs the mentor (use_mentor=True)")
            out[name] = gaussian_blur(upsampled(name), self.config.sigma)
        return out

    @torch.no_grad()
    def fit(self, smoothed: dict[str, list[torch.Tensor]], valid: list[torch.Tensor]) -> None:
        """Normal statistics from smoothed candidate maps of normal images.

        ``smoothed[name]`` and ``valid`` are lists of ``(B, S, S)`` batches.
        """
        q = self.config.hard_quantile
        for name, batches in smoothed.items():
            i = MAPS.index(name)
            pix = torch.cat([m[v] for m, v in zip(batches, valid)]).double()
            if pix.numel() == 0:
                raise ValueError("no object pixels in the normal images: cannot fit the vote")
            mean, std = pix.mean(), pix.std(unbiased=False).clamp_min(1e-12)
            self.mean[i], self.std[i] = mean.float(), std.float()
            z = (pix - mean) / std
            self.pixel_threshold[i] = _quantile(z, q)
            maxima = torch.cat([((m - mean) / std).flatten(1).amax(1) for m in batches])
            self.image_threshold[i] = _quantile(maxima.double(), q)
        self.fitted.fill_(True)

    def normalize(self, name: str, smoothed: torch.Tensor) -> torch.Tensor:
        i = MAPS.index(name)
        return (smoothed - self.mean[i]) / self.std[i]

    def forward(self, patch_maps: dict[str, torch.Tensor], valid: torch.Tensor):
        """-> ``(anomaly_map (B, S, S), image_score (B,), normalised maps {name: (B, S, S)})``."""
        if not bool(self.fitted):
            raise RuntimeError("the voting module has no normal statistics yet (call fit)")
        maps = {n: self.normalize(n, m) for n, m in self.candidate_maps(patch_maps, valid).items()}
        final, score = self.combine(maps)
        return final, score, maps

    def combine(self, maps: dict[str, torch.Tensor]):
        """Vote over normalised maps ``{name: (B, S, S)}`` (the config's maps, in its order)."""
        names = [n for n in self.config.maps]
        missing = [n for n in names if n not in maps]
        if missing:
            raise ValueError(f"the vote needs maps {missing}, got {sorted(maps)}")
        stack = torch.stack([maps[n] for n in names])            # (M, B, S, S)
        maxima = stack.flatten(2).amax(2)                        # (M, B)
        if self.config.vote == "hard":
            idx = torch.tensor([MAPS.index(n) for n in names], device=stack.device)
            pt = self.pixel_threshold.to(stack.device)[idx].view(-1, 1, 1, 1).to(stack.dtype)
            it = self.image_threshold.to(stack.device)[idx].view(-1, 1).to(stack.dtype)
            final = (stack > pt).sum(0).to(stack.dtype) * stack.mean(0)
            score = (maxima > it).sum(0).to(stack.dtype) * maxima.mean(0)
        else:  # soft, or a single map
            final = stack.mean(0)
            score = maxima.mean(0)
        return final, score


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    values = values.flatten()
    if values.numel() > 1_000_000:  # torch.quantile's input limit; a sorted subsample suffices
        step = values.numel() // 1_000_000 + 1
        values = values.sort().values[::step]
    return torch.quantile(values, q).float()
